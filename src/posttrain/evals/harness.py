"""`eval.engine: lm_eval`: EleutherAI's lm-evaluation-harness scores the benchmarks it has, on the very items
the registry would use. Each benchmark's items are written as jsonl in the lm-eval task's own schema and the
task is pointed at that file (`dataset_path: json`), so nothing is fetched from the Hub; the per-item results
(`log_samples`) become the same score records the registry writes.

Backends: vLLM where `generation.vllm_wanted()` (a GPU and vLLM installed), else transformers (`hf`) on CPU.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from posttrain.evals.olmo import GSM8K
from posttrain.evals.records import record
from posttrain.recipe import Recipe
from posttrain.verifiers.ifeval import parse_ground_truth


def _gsm8k(row: dict) -> dict:
    return {"question": row["question"], "answer": row["solution"]}


def _ifeval(row: dict) -> dict:
    pairs = parse_ground_truth(row["ground_truth"])
    # IFEval's `key` is an int; every kwargs dict gets every key (None where unset), as in google/IFEval
    keys = sorted({k for _, kwargs in pairs for k in kwargs})
    return {"prompt": row["messages"][-1]["content"], "instruction_id_list": [i for i, _ in pairs],
            "kwargs": [{k: kwargs.get(k) for k in keys} for _, kwargs in pairs]}


def _mmlu(row: dict) -> dict:
    return {"question": row["question"], "subject": row["subject"], "choices": row["choices"],
            "answer": row["answer"], "prompt": row["messages"][-1]["content"]}


def _math500(row: dict) -> dict:
    return {"problem": row["problem"], "solution": row["solution"], "answer": row["ground_truth"]}


def _lm_eval_task(name: str) -> str:
    import lm_eval

    return str(Path(lm_eval.__file__).parent / "tasks" / name)


@dataclass(frozen=True)
class LmEvalTask:
    include: str | None  # the lm-eval task config ours builds on (path under lm_eval/tasks), or None
    overrides: dict  # keys of the task config we set ourselves
    metric: str  # the per-item metric that becomes the score
    extra: dict[str, str]  # further per-item metrics reported beside it: our name -> lm-eval's
    filter: str  # the filter whose result counts
    document: Callable[[dict], dict]  # registry row -> the task's document schema
    until: tuple[str, ...] = ()  # stop sequences


TASKS = {
    # lm-eval's gsm8k_cot: the same 8 exemplars; `flexible-extract` (the last number) is how we read answers
    "gsm8k": LmEvalTask("gsm8k/gsm8k-cot.yaml", {}, "exact_match", {}, "flexible-extract", _gsm8k, GSM8K.stop),
    "ifeval": LmEvalTask("ifeval/ifeval.yaml", {}, "prompt_level_loose_acc",
                         {"prompt_level_loose": "prompt_level_loose_acc",
                          "prompt_level_strict": "prompt_level_strict_acc"}, "none",
                         _ifeval),
    # our 0-shot CoT prompt, lm-eval's regex filter with our extraction rule ("answer is X", the last one)
    "mmlu": LmEvalTask(None, {
        "output_type": "generate_until", "doc_to_text": "{{prompt}}",
        "doc_to_target": "{{['A', 'B', 'C', 'D'][answer]}}",
        "filter_list": [{"name": "answer-is", "filter": [
            {"function": "regex", "regex_pattern": r"(?i)answer is:?\s*\(?([A-J])\b", "group_select": -1},
            {"function": "take_first"}]}],
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                         "ignore_case": True, "ignore_punctuation": True}],
        "num_fewshot": 0}, "exact_match", {}, "answer-is", _mmlu),
    # lm-eval's 6-shot primer and MC2 over the answer choices' log-likelihoods
    "truthfulqa": LmEvalTask("truthfulqa/truthfulqa_mc2.yaml", {}, "acc", {}, "none", lambda row: row["doc"]),
    # lm-eval's Minerva MATH-500 (needs lm-eval[math]: antlr4 4.11, math-verify); the cluster image has them
    "math500": LmEvalTask("minerva_math/minerva_math500.yaml", {}, "math_verify", {"exact_match": "exact_match"}, "none",
                          _math500),
}


def write_task(name: str, rows: list[dict], directory: Path, max_new_tokens: int) -> str:
    """The benchmark's items as jsonl and an lm-eval task YAML that reads them; returns the task name."""
    spec = TASKS[name]
    data = directory / f"{name}.jsonl"
    with data.open("w") as handle:
        for i, row in enumerate(rows):
            handle.write(json.dumps({"key": i, **spec.document(row)}) + "\n")
    task = f"posttrain_{name}"
    config = {"task": task, **({"include": _lm_eval_task(spec.include)} if spec.include else {}), **spec.overrides,
              "dataset_path": "json", "dataset_name": None, "dataset_kwargs": {"data_files": {"test": str(data)}},
              "test_split": "test", "training_split": None, "validation_split": None,
              "generation_kwargs": {"until": list(spec.until), "do_sample": False, "max_gen_toks": max_new_tokens}}
    (directory / f"{task}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return task


def backend(model_path: str, batch_size: int, trust_remote_code: bool) -> tuple[str, str]:
    """lm-eval's model type and model_args: vLLM on a GPU with vLLM installed, else transformers on CPU."""
    from posttrain.generation import vllm_wanted

    if vllm_wanted():
        import torch

        return "vllm", (f"pretrained={model_path},tensor_parallel_size={torch.cuda.device_count()},"
                        f"trust_remote_code={trust_remote_code}")
    return "hf", f"pretrained={model_path},dtype=float32,device=cpu,trust_remote_code={trust_remote_code}"


def run_lm_eval(model: str | object, suites: dict[str, list[dict]], max_new_tokens: dict[str, int],
                batch_size: int, trust_remote_code: bool = False) -> dict[str, list[dict]]:
    """lm-eval's logged samples per benchmark, in item order. `model`: a path or Hub name, or an lm-eval `LM`
    instance (the differential test's canned answers)."""
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError as exc:
        raise RuntimeError("recipe.eval.engine: lm_eval needs the lm-eval package: "
                           "pip install 'posttrain[lm-eval]'") from exc

    with tempfile.TemporaryDirectory() as tmp:
        tasks = {write_task(name, rows, Path(tmp), max_new_tokens[name]): name for name, rows in suites.items()}
        chat = isinstance(model, str)  # a canned LM has no chat template
        model, model_args = backend(model, batch_size, trust_remote_code) if chat else (model, None)
        output = lm_eval.simple_evaluate(model=model, model_args=model_args, tasks=list(tasks),
                                         task_manager=TaskManager(include_path=tmp, include_defaults=False),
                                         batch_size=batch_size, apply_chat_template=chat,
                                         fewshot_as_multiturn=chat, log_samples=True, bootstrap_iters=0)
    found = {}
    for task, name in tasks.items():
        samples = [s for s in output["samples"][task] if s["filter"] == TASKS[name].filter]
        found[name] = sorted(samples, key=lambda s: s["doc_id"])
        if len(found[name]) != len(suites[name]):
            raise RuntimeError(f"lm-eval {task}: {len(found[name])} results for {len(suites[name])} items")
    return found


def records(suites: dict[str, list[dict]], samples: dict[str, list[dict]]) -> dict[str, dict]:
    """lm-eval's per-item results as the registry's score records."""
    found = {}
    for name, rows in suites.items():
        metric, extra, logged = TASKS[name].metric, TASKS[name].extra, samples[name]
        outcomes = [float(s[metric]) for s in logged]
        # generated text, or nothing where lm-eval compared log-likelihoods (truthfulqa)
        completions = [s["resps"][0][0] if isinstance(s["resps"][0][0], str) else "" for s in logged]
        metrics = {ours: [float(s[theirs]) for s in logged] for ours, theirs in extra.items()} or None
        found[name] = record(rows, outcomes, completions, engine="lm_eval", metrics=metrics)
    return found


def score(recipe: Recipe, model_path: str, suites: dict[str, list[dict]]) -> dict[str, dict]:
    """Score records of one model on the benchmarks lm-eval has (`TASKS`)."""
    from posttrain.evals import BENCHMARKS

    lengths = {name: BENCHMARKS[name].max_new_tokens(recipe) for name in suites}
    samples = run_lm_eval(model_path, suites, lengths, recipe.eval.batch_size, recipe.model.trust_remote_code)
    return records(suites, samples)
