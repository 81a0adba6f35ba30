"""Tülu 3's benchmarks that are not offline here: BBH, DROP, PopQA and TruthfulQA. Each loads by
its Hugging Face name on a cluster (`eval.hf_datasets.<name>`), or from a local directory of `<split>.jsonl`
files (BBH: `<subtask>.jsonl`) in the same published schema, which is how the tests run them.

TruthfulQA's MC2 compares answer log-likelihoods, so it runs on the lm_eval engine only (`harness.TASKS`).
AlpacaEval 2 is not here: it needs a judge model, and no stage has one to give (docs/TULU3.md)."""
from __future__ import annotations

import json
import re
import string
from collections import Counter
from pathlib import Path

from posttrain.evals.protocol import Protocol

BBH = Protocol(
    shots=3, chain_of_thought=True, chat_template=True, fewshot_as_multiturn=True,
    answer_extraction="the text after the last 'the answer is', final '.' dropped", metric="exact match",
    lm_eval_task="bbh_cot_fewshot_<subtask> (its exemplars are the ones we use)",
    published="OLMES bbh:cot-v1::tulu: 3-shot CoT (Suzgun et al. exemplars), chat, multiturn, EM over 27 subtasks",
    differences="micro average over items, not the mean of subtask scores")
DROP = Protocol(
    shots=3, chain_of_thought=False, chat_template=False, fewshot_as_multiturn=False,
    answer_extraction="the completion up to its first newline", metric="token F1, best over the gold spans",
    lm_eval_task="drop (EleutherAI/drop schema)",
    published="OLMES drop::llama3: 3-shot, no chat template, F1",
    differences="the first 3 training items as exemplars; SQuAD-style F1 per span (DROP's official F1 also "
                "aligns multi-span answers and matches numbers)")
POPQA = Protocol(
    shots=0, chain_of_thought=False, chat_template=True, fewshot_as_multiturn=False,
    answer_extraction="the whole completion", metric="any possible answer occurs in it (case-insensitive)",
    published="OLMES popqa::tulu: 15-shot, chat, multiturn, EM",
    differences="0-shot: OLMES's 15 fixed exemplars are not reproduced here")
TRUTHFULQA = Protocol(
    shots=6, chain_of_thought=False, chat_template=False, fewshot_as_multiturn=False,
    answer_extraction="none: log-likelihood of each answer choice after the 6-shot QA primer",
    metric="MC2 (normalised probability mass on the true answers)", lm_eval_task="truthfulqa_mc2",
    published="OLMES truthfulqa::tulu: 6-shot, MC2", differences="lm-eval's truthfulqa_mc2, not OLMES's")


def load(source: str, split: str, config: str | None = None) -> list[dict]:
    """Rows of a Hub dataset, or of `<source>/<split>.jsonl` (a local copy in the published schema)."""
    path = Path(source)
    if path.is_dir():
        return _jsonl(path / f"{split}.jsonl")
    import datasets

    return list(datasets.load_dataset(source, config, split=split))


def _jsonl(file: Path) -> list[dict]:
    if not file.exists():
        raise FileNotFoundError(f"{file}: missing")
    rows = []
    for number, line in enumerate(file.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{file} line {number}: not JSON: {exc}") from None
    return rows


def _need(row: dict, fields: tuple[str, ...], where: str) -> None:
    if missing := [f for f in fields if f not in row]:
        raise ValueError(f"{where}: fields {missing} missing (published schema: {list(fields)})")


def bbh_exemplars(subtask: str) -> list[tuple[str, str]]:
    """The 3 CoT exemplars of a BBH subtask (Suzgun et al.), as lm-eval ships them."""
    import lm_eval
    import yaml

    config = Path(lm_eval.__file__).parent / "tasks" / "bbh" / "cot_fewshot" / f"{subtask}.yaml"
    samples = yaml.safe_load(config.read_text())["fewshot_config"]["samples"]
    return [(s["input"], s["target"]) for s in samples]


def bbh(source: str, subtasks: list[str] | None = None) -> list[dict]:
    """`lukaemon/bbh` (one config per subtask, `input`/`target`), 3-shot CoT as exemplar turns."""
    from posttrain.evals import fewshot

    if subtasks is None:
        subtasks = sorted(p.stem for p in Path(source).glob("*.jsonl")) if Path(source).is_dir() else BBH_SUBTASKS
    rows = []
    for subtask in subtasks:
        shots = fewshot.turns(bbh_exemplars(subtask), "Q: {q}\nA: Let's think step by step.", "q")
        # on the Hub one config per subtask; locally one file per subtask
        items = _jsonl(Path(source, f"{subtask}.jsonl")) if Path(source).is_dir() else load(source, "test", subtask)
        for i, doc in enumerate(items):
            _need(doc, ("input", "target"), f"bbh/{subtask} item {i}")
            question = {"role": "user", "content": f"Q: {doc['input']}\nA: Let's think step by step."}
            rows.append({"messages": [*shots, question], "ground_truth": doc["target"], "dataset": "bbh",
                         "subtask": subtask})
    return rows


def bbh_score(rows: list[dict], completions: list[str]) -> list[float]:
    outcomes = []
    for row, completion in zip(rows, completions, strict=True):
        found = re.findall(r"the answer is (.*)", completion, flags=re.I)
        answer = found[-1].strip().rstrip(".").strip() if found else None
        outcomes.append(1.0 if answer is not None and answer == row["ground_truth"].strip() else 0.0)
    return outcomes


def _normalise(text: str) -> list[str]:
    text = "".join(c for c in text.lower() if c not in string.punctuation)
    return re.sub(r"\b(a|an|the)\b", " ", text).split()


def token_f1(prediction: str, gold: str) -> float:
    ours, theirs = _normalise(prediction), _normalise(gold)
    common = sum((Counter(ours) & Counter(theirs)).values())
    if not ours or not theirs:
        return float(ours == theirs)
    if not common:
        return 0.0
    precision, recall = common / len(ours), common / len(theirs)
    return 2 * precision * recall / (precision + recall)


def drop(source: str) -> list[dict]:
    """`ucinlp/drop` (`passage`, `question`, `answers_spans.spans`), 3-shot from its first training items."""
    def prompt(doc):
        return f"Passage: {doc['passage']}\nQuestion: {doc['question']}\nAnswer:"

    shots = "".join(f"{prompt(d)} {d['answers_spans']['spans'][0]}\n\n" for d in load(source, "train")[:DROP.shots])
    rows = []
    for i, doc in enumerate(load(source, "validation")):
        _need(doc, ("passage", "question", "answers_spans"), f"drop item {i}")
        rows.append({"messages": [{"role": "user", "content": shots + prompt(doc)}], "dataset": "drop",
                     "ground_truth": json.dumps(doc["answers_spans"]["spans"])})
    return rows


def drop_score(rows: list[dict], completions: list[str]) -> list[float]:
    return [max(token_f1(c.strip().split("\n")[0], gold) for gold in json.loads(r["ground_truth"]))
            for r, c in zip(rows, completions, strict=True)]


def popqa(source: str) -> list[dict]:
    """`akariasai/PopQA` (`question`, `possible_answers` as a JSON list in a string)."""
    rows = []
    for i, doc in enumerate(load(source, "test")):
        _need(doc, ("question", "possible_answers"), f"popqa item {i}")
        rows.append({"messages": [{"role": "user", "content": doc["question"]}], "dataset": "popqa",
                     "ground_truth": doc["possible_answers"], "popularity": doc.get("s_pop")})
    return rows


def popqa_score(rows: list[dict], completions: list[str]) -> list[float]:
    return [1.0 if any(a.lower() in c.lower() for a in json.loads(r["ground_truth"])) else 0.0
            for r, c in zip(rows, completions, strict=True)]


def truthfulqa(source: str) -> list[dict]:
    """`truthfulqa/truthful_qa`, config `multiple_choice` (`question`, `mc1_targets`, `mc2_targets`)."""
    rows = []
    for i, doc in enumerate(load(source, "validation", "multiple_choice")):
        _need(doc, ("question", "mc1_targets", "mc2_targets"), f"truthfulqa item {i}")
        rows.append({"messages": [{"role": "user", "content": doc["question"]}], "dataset": "truthfulqa",
                     "ground_truth": json.dumps(doc["mc2_targets"]), "doc": doc})
    return rows


BBH_SUBTASKS = [
    "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa", "dyck_languages",
    "formal_fallacies", "geometric_shapes", "hyperbaton", "logical_deduction_five_objects",
    "logical_deduction_seven_objects", "logical_deduction_three_objects", "movie_recommendation",
    "multistep_arithmetic_two", "navigate", "object_counting", "penguins_in_a_table",
    "reasoning_about_colored_objects", "ruin_names", "salient_translation_error_detection", "snarks",
    "sports_understanding", "temporal_sequences", "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects", "web_of_lies",
    "word_sorting",
]
