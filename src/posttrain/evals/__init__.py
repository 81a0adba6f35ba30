"""The benchmark registry: each benchmark gives rows (`messages`, `ground_truth`, ...), a generation length
and a scorer `(rows, completions) -> outcomes`. The eval stage scores every model on the same rows."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from posttrain.evals import humaneval as _humaneval, ifeval as _ifeval_protocol, olmo as _olmo_protocols
from posttrain.evals import hub as _hub_protocols
from posttrain.evals.protocol import Protocol
from posttrain.recipe import Recipe


@dataclass(frozen=True)
class Benchmark:
    name: str
    eval_set: str  # its name for decontamination (recipe.data.decontamination.eval_sets)
    rows: Callable[[Recipe, Path], list[dict]]

    def max_new_tokens(self, recipe: Recipe) -> int:
        return recipe.eval.max_new_tokens_for.get(self.name, recipe.eval.max_new_tokens)
    score: Callable[[list[dict], list[str]], list[float]]
    protocol: Protocol | None = None  # how it is asked and scored (None: our own held-out set, no published twin)
    # further per-item scores reported beside `score` (IFEval: prompt-level loose and strict)
    metrics: Callable[[list[dict], list[str]], dict[str, list[float]]] | None = None


def _arithmetic_rows(recipe: Recipe, data_dir: Path) -> list[dict]:
    from posttrain.data.formats import FILES, read_rows

    return read_rows(data_dir / FILES["heldout"], "rlvr")


def _verify(rows: list[dict], completions: list[str]) -> list[float]:
    from posttrain.verifiers import verify

    return verify(completions, dataset=[r["dataset"] for r in rows], ground_truth=[r["ground_truth"] for r in rows])


def _humaneval_rows(recipe: Recipe, data_dir: Path) -> list[dict]:
    from posttrain.evals import humaneval

    return humaneval.rows()


def _humaneval_score(rows: list[dict], completions: list[str]) -> list[float]:
    from posttrain.evals import humaneval

    return humaneval.score(rows, completions)


def _olmo(name: str) -> Callable[[Recipe, Path], list[dict]]:
    def rows(recipe: Recipe, data_dir: Path) -> list[dict]:
        from posttrain.evals import olmo

        return getattr(olmo, name)(recipe.eval.hf_datasets.get(name))

    return rows


def ifeval_rows(recipe: Recipe, heldout_ifeval: list[dict]) -> list[dict]:
    """IFEval from the HF dataset named in `eval.hf_datasets.ifeval` (e.g. google/IFEval), else the data
    stage's held-out persona instruction-following tasks (same verifier, same format)."""
    name = recipe.eval.hf_datasets.get("ifeval")
    if not name:
        return heldout_ifeval
    import datasets

    return [{"messages": [{"role": "user", "content": d["prompt"]}], "dataset": "ifeval",
             "ground_truth": json.dumps({"instruction_id_list": d["instruction_id_list"], "kwargs": d["kwargs"]})}
            for d in datasets.load_dataset(name, split="train")]


def _ifeval(recipe: Recipe, data_dir: Path) -> list[dict]:
    from posttrain.data.formats import FILES, read_rows

    path = data_dir / FILES["heldout_ifeval"]
    rows = ifeval_rows(recipe, read_rows(path, "rlvr") if path.exists() else [])
    if not rows:
        raise ValueError("benchmark ifeval: no rows; name an IFEval dataset in recipe.eval.hf_datasets.ifeval "
                         "or set recipe.data.synthesis.heldout_ifeval_rows")
    return rows


def _hub(name: str, example: str) -> Callable[[Recipe, Path], list[dict]]:
    def rows(recipe: Recipe, data_dir: Path) -> list[dict]:
        from posttrain.evals import hub

        source = recipe.eval.hf_datasets.get(name)
        if not source:
            raise ValueError(f"benchmark {name}: not offline; name its dataset in recipe.eval.hf_datasets.{name} "
                             f"(e.g. {example}) or a local directory in the same schema")
        return getattr(hub, name)(source)

    return rows


def _loglikelihood_only(rows: list[dict], completions: list[str]) -> list[float]:
    raise ValueError("benchmark truthfulqa: MC2 compares answer log-likelihoods; set recipe.eval.engine: lm_eval")


def _hub_score(name: str) -> Callable[[list[dict], list[str]], list[float]]:
    def score(rows: list[dict], completions: list[str]) -> list[float]:
        from posttrain.evals import hub

        return getattr(hub, f"{name}_score")(rows, completions)

    return score


BENCHMARKS = {
    "gsm8k": Benchmark("gsm8k", "gsm8k", _olmo("gsm8k"), _verify, _olmo_protocols.GSM8K),
    "math500": Benchmark("math500", "math500", _olmo("math500"), _verify, _olmo_protocols.MATH),
    "arithmetic": Benchmark("arithmetic", "heldout", _arithmetic_rows, _verify),
    "ifeval": Benchmark("ifeval", "ifeval", _ifeval, _ifeval_protocol.loose, _ifeval_protocol.PROTOCOL,
                        _ifeval_protocol.metrics),
    "mmlu": Benchmark("mmlu", "mmlu", _olmo("mmlu"), _verify, _olmo_protocols.MMLU),
    "humaneval": Benchmark("humaneval", "humaneval", _humaneval_rows, _humaneval_score, _humaneval.PROTOCOL),
    # Tülu 3's Hub-only benchmarks (evals/hub.py); AlpacaEval 2 is not one: it needs a judge model
    "bbh": Benchmark("bbh", "bbh", _hub("bbh", "lukaemon/bbh"), _hub_score("bbh"), _hub_protocols.BBH),
    "drop": Benchmark("drop", "drop", _hub("drop", "ucinlp/drop"), _hub_score("drop"), _hub_protocols.DROP),
    "popqa": Benchmark("popqa", "popqa", _hub("popqa", "akariasai/PopQA"), _hub_score("popqa"), _hub_protocols.POPQA),
    "truthfulqa": Benchmark("truthfulqa", "truthfulqa", _hub("truthfulqa", "truthfulqa/truthful_qa"),
                            _loglikelihood_only, _hub_protocols.TRUTHFULQA),
}
