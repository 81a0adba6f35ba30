"""Overhead of running the pipeline through kfp.local against calling the same stages in one process.

    python benchmarks/pipeline.py [--recipe recipes/tiny.yaml] [--sft-rows 4000]

Both sides run the same recipe (by default the demo recipe with a smaller SFT set so the benchmark takes
minutes); the direct side runs first, then the pipeline. Prints one JSON line; `ratio` is
pipeline time / direct time, so overhead = ratio - 1.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from posttrain.recipe import load
from posttrain.stages import base, data, dpo, preference, promote, rlvr, sft
from posttrain.stages import eval as evaluate

ROOT = Path(__file__).resolve().parents[1]


def direct(recipe, out: Path) -> None:
    """Every stage in this process, in pipeline order, the way the components call them."""
    data.run(recipe, out / "data")
    base.run(recipe, out / "data", out / "base")
    sft.run(recipe, out / "base", out / "data", out / "sft")
    preference.run(recipe, out / "sft", out / "data", out / "pairs")
    dpo.run(recipe, out / "sft", out / "pairs", out / "dpo")
    rlvr.run(recipe, out / "dpo", out / "data", out / "rlvr")
    models = {name: out / name for name in ("base", "sft", "dpo", "rlvr")}
    evaluate.run(recipe, out / "data", models, out / "eval")
    report = promote.decide(recipe, out / "eval", out / "gate")
    if report["gate"]["passed"]:
        promote.register(recipe, out / "rlvr", out / "gate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "tiny.yaml")
    parser.add_argument("--sft-rows", type=int, default=4000)
    args = parser.parse_args()
    from posttrain.pipelines import local  # imports kfp; the direct side never needs it

    recipe = load(args.recipe).override(data={"sft_rows": args.sft_rows})
    timings = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side in ("direct", "pipeline"):
            out = Path(tmp) / side
            run_recipe = recipe.override(promote={"registry": (out / "registry").as_uri()})
            start = time.perf_counter()
            direct(run_recipe, out) if side == "direct" else local.run(run_recipe, out)
            timings[side] = time.perf_counter() - start
    print(json.dumps({"benchmark": "pipeline", "ours": round(timings["pipeline"], 1),
                      "baseline": round(timings["direct"], 1), "unit": "s",
                      "ratio": round(timings["pipeline"] / timings["direct"], 3),
                      "overhead": round(timings["pipeline"] / timings["direct"] - 1, 3),
                      "recipe": recipe.name, "sft_rows": args.sft_rows}))


if __name__ == "__main__":
    main()
