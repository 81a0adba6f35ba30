"""The benchmark registry: each benchmark gives rows (`messages`, `ground_truth`, ...), a generation length
and a scorer `(rows, completions) -> outcomes`. The eval stage scores every model on the same rows."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from posttrain.recipe import Recipe


@dataclass(frozen=True)
class Benchmark:
    name: str
    eval_set: str  # its name for decontamination (recipe.data.decontamination.eval_sets)
    rows: Callable[[Recipe, Path], list[dict]]
    max_new_tokens: Callable[[Recipe], int]
    score: Callable[[list[dict], list[str]], list[float]]


def _arithmetic_rows(recipe: Recipe, data_dir: Path) -> list[dict]:
    from posttrain.data.formats import read_rows
    from posttrain.stages.data import FILES

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


BENCHMARKS = {
    "gsm8k": Benchmark("gsm8k", "gsm8k", _olmo("gsm8k"), lambda r: r.eval.max_new_tokens, _verify),
    "math500": Benchmark("math500", "math500", _olmo("math500"), lambda r: r.eval.max_new_tokens, _verify),
    "arithmetic": Benchmark("arithmetic", "heldout", _arithmetic_rows, lambda r: r.eval.max_new_tokens, _verify),
    "humaneval": Benchmark("humaneval", "humaneval", _humaneval_rows, lambda r: r.eval.code_max_new_tokens,
                           _humaneval_score),
}
