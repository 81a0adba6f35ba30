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

import direct
from posttrain.recipe import load

ROOT = Path(__file__).resolve().parents[1]


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
            direct.run(run_recipe, out) if side == "direct" else local.run(run_recipe, out)
            timings[side] = time.perf_counter() - start
    print(json.dumps({"benchmark": "pipeline", "ours": round(timings["pipeline"], 1),
                      "baseline": round(timings["direct"], 1), "unit": "s",
                      "ratio": round(timings["pipeline"] / timings["direct"], 3),
                      "overhead": round(timings["pipeline"] / timings["direct"] - 1, 3),
                      "recipe": recipe.name, "sft_rows": args.sft_rows}))


if __name__ == "__main__":
    main()
