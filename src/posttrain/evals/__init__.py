"""The benchmark registry: each benchmark gives rows (`messages`, `ground_truth`, ...), a generation length
and a scorer `(rows, completions) -> outcomes`. The eval stage scores every model on the same rows."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from posttrain.recipe import Recipe


@dataclass(frozen=True)
class Benchmark:
    name: str
    eval_set: str  # its name for decontamination (recipe.data.decontamination.eval_sets)
    rows: Callable[[Recipe, Path], list[dict]]

    def max_new_tokens(self, recipe: Recipe) -> int:
        return recipe.eval.max_new_tokens_for.get(self.name, recipe.eval.max_new_tokens)
    score: Callable[[list[dict], list[str]], list[float]]


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


BENCHMARKS = {
    "gsm8k": Benchmark("gsm8k", "gsm8k", _olmo("gsm8k"), _verify),
    "math500": Benchmark("math500", "math500", _olmo("math500"), _verify),
    "arithmetic": Benchmark("arithmetic", "heldout", _arithmetic_rows, _verify),
    "ifeval": Benchmark("ifeval", "ifeval", _ifeval, _verify),
    "mmlu": Benchmark("mmlu", "mmlu", _olmo("mmlu"), _verify),
    "humaneval": Benchmark("humaneval", "humaneval", _humaneval_rows, _humaneval_score),
}
