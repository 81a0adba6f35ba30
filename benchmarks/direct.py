"""Every stage of the pipeline in one process, in pipeline order, the way the components call them.

Shared by the benchmarks that measure what the stages do without kfp.local around them.
"""
from __future__ import annotations

from pathlib import Path

from posttrain.stages import base, data, dpo, preference, promote, rlvr, sft
from posttrain.stages import eval as evaluate

TRAINED = ("base", "sft", "dpo", "rlvr")


def run(recipe, out: Path, last: str = "rlvr") -> None:
    """Train up to and including the `last` model, score every model trained; gate and promote a whole run."""
    data.run(recipe, out / "data")
    base.run(recipe, out / "data", out / "base")
    models = TRAINED[: TRAINED.index(last) + 1]
    if "sft" in models:
        sft.run(recipe, out / "base", out / "data", out / "sft")
    if "dpo" in models:
        preference.run(recipe, out / "sft", out / "data", out / "pairs")
        dpo.run(recipe, out / "sft", out / "pairs", out / "dpo")
    if "rlvr" in models:
        rlvr.run(recipe, out / "dpo", out / "data", out / "rlvr")
    evaluate.run(recipe, out / "data", {name: out / name for name in models}, out / "eval")
    if last == "rlvr" and promote.decide(recipe, out / "eval", out / "gate")["gate"]["passed"]:
        promote.register(recipe, out / "rlvr", out / "gate")
