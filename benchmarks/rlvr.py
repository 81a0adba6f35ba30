"""GRPO against PPO on the tiny task: held-out accuracy gained per wall-clock minute, same start, one run.

    python benchmarks/rlvr.py [--run demo-run] [--steps 40]

Starts both from the DPO model of a finished local run (`posttrain demo --out demo-run`), trains each for
the same number of optimizer steps on the same RLVR prompts with the recipe's settings, and scores the
held-out set greedily before and after. Prints one JSON line; `ours` is GRPO (the default algorithm),
`baseline` is PPO, both in accuracy points per minute.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from posttrain.pipelines.local import stage_summaries
from posttrain.recipe import load
from posttrain.stages import eval as evaluate
from posttrain.stages import rlvr

ROOT = Path(__file__).resolve().parents[1]


def accuracy(recipe, model_dir: Path, data_dir: Path, out: Path) -> float:
    scores = evaluate.run(recipe.override(promote={"non_regression": False}), data_dir, {"m": model_dir}, out)
    return scores["benchmarks"]["arithmetic"]["m"]["score"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "demo-run")
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    run_dirs = sorted((args.run / "kfp").glob("tulu3-*"))
    if not run_dirs:
        raise SystemExit(f"{args.run}: no local run; run `posttrain demo --out {args.run}` first")
    stages = {s["stage"]: Path(s["path"]) for s in stage_summaries(run_dirs[-1])}
    recipe = load(ROOT / "recipes" / "tiny.yaml").override(rlvr={"max_steps": args.steps})
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start_accuracy = accuracy(recipe, stages["dpo"], stages["data"], tmp / "eval-start")
        for algorithm in ("grpo", "ppo"):
            run_recipe = recipe.override(rlvr={"algorithm": algorithm})
            began = time.perf_counter()
            rlvr.run(run_recipe, stages["dpo"], stages["data"], tmp / algorithm)
            minutes = (time.perf_counter() - began) / 60
            gained = accuracy(recipe, tmp / algorithm, stages["data"], tmp / f"eval-{algorithm}") - start_accuracy
            figures[algorithm] = {"points_per_minute": 100 * gained / minutes, "gain": gained, "minutes": minutes}
    ours, baseline = figures["grpo"]["points_per_minute"], figures["ppo"]["points_per_minute"]
    print(json.dumps({"benchmark": "rlvr", "ours": round(ours, 2), "baseline": round(baseline, 2),
                      "unit": "accuracy points per minute", "ratio": round(ours / baseline, 2) if baseline else None,
                      "start_accuracy": round(start_accuracy, 4), "steps": args.steps,
                      **{f"{a}_{k}": round(v, 4) for a, f in figures.items() for k, v in f.items()}}))


if __name__ == "__main__":
    main()
