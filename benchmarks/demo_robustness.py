"""Does the demo hold on other machines? The demo recipe under several seeds x CPU kernel/thread settings.

    python benchmarks/demo_robustness.py [--recipe recipes/tiny.yaml] [--seeds 0 1 2]
        [--settings native:2 avx2:1] [--jobs 1] [--out DIR] [--stop-after gate] [--set sft.epochs=2 ...]

Each run is a fresh process that runs the recipe's stages (the demo's stage code, `benchmarks/direct.py`) with
`recipe.seed` set to the run's seed, `ATEN_CPU_CAPABILITY` set to the setting's kernel (`native` leaves it
unset; `avx2` and `default` stand in for CPUs without AVX-512, or without AVX2) and torch limited to the
setting's thread count: different float rounding, as on another machine. Prints one row per run (held-out
arithmetic accuracy of every model with its 95% interval, gate verdict, wall time) and, last, one JSON line:
the minimum SFT gain over the base model, the runs that pass the gate, mean and minimum DPO - SFT and
final - DPO, and in how many runs the final model beats the SFT model.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("base", "sft", "dpo", "rlvr")


def child(args: argparse.Namespace) -> None:
    """One run, in this process: the environment already holds the kernel and thread settings."""
    import torch

    import direct
    from posttrain.recipe import load

    torch.set_num_threads(args.threads)
    recipe = load(args.recipe)
    for assignment in args.set:
        key, value = assignment.split("=", 1)
        section, field = key.split(".", 1)
        recipe = recipe.override(**{section: {field: json.loads(value)}})
    recipe = recipe.override(promote={"registry": (args.out / "registry").as_uri()})
    recipe = type(recipe).model_validate({**recipe.model_dump(), "seed": args.seed})
    start = time.perf_counter()
    direct.run(recipe, args.out, last=args.stop_after)
    result = {"seed": args.seed, "kernel": torch.backends.cpu.get_cpu_capability(), "threads": args.threads,
              "seconds": round(time.perf_counter() - start, 1)}
    if (args.out / "eval" / "scores.json").exists():
        scores = json.loads((args.out / "eval" / "scores.json").read_text())["benchmarks"]["arithmetic"]
        rows = [json.loads(line) for line in (args.out / "data" / "heldout.jsonl").read_text().splitlines()]
        from posttrain.data.arithmetic import leading_carry

        carry = [leading_carry(*r["operands"], r["operation"]) for r in rows]
        result["arithmetic"] = {
            label: {"score": r["score"], "ci95": r["ci95"],
                    # the problems where the SFT teacher can slip, and the rest
                    "carry": statistics.mean(o for o, c in zip(r["outcomes"], carry) if c),
                    "no_carry": statistics.mean(o for o, c in zip(r["outcomes"], carry) if not c)}
            for label, r in scores.items()}
    if (args.out / "gate" / "report.json").exists():
        gate = json.loads((args.out / "gate" / "report.json").read_text())["gate"]
        result["gate"] = {"passed": gate["passed"], "reasons": gate["reasons"]}
    (args.out / "result.json").write_text(json.dumps(result, indent=2))


def launch(args: argparse.Namespace, seed: int, setting: str, out: Path) -> dict:
    kernel, threads = setting.split(":")
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false"}
    env.pop("ATEN_CPU_CAPABILITY", None)
    if kernel != "native":
        env["ATEN_CPU_CAPABILITY"] = kernel
    command = [sys.executable, __file__, "--child", "--seed", str(seed), "--threads", threads, "--out", str(out),
               "--recipe", str(args.recipe), "--stop-after", args.stop_after] + [f"--set={s}" for s in args.set]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "log.txt", "w") as log:
        code = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    if code:
        tail = (out / "log.txt").read_text().splitlines()[-15:]
        return {"seed": seed, "setting": setting, "error": f"exit {code}", "log_tail": tail}
    return json.loads((out / "result.json").read_text()) | {"setting": setting}


def row(result: dict) -> str:
    if "error" in result:
        return f"| {result['seed']} | {result['setting']} | failed: {result['error']} |"
    cells = []
    for label in MODELS:
        r = result.get("arithmetic", {}).get(label)
        cells.append(f"{100 * r['score']:.1f} [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]" if r else "-")
    verdict = "PASS" if result.get("gate", {}).get("passed") else ("-" if "gate" not in result else "REFUSED")
    return (f"| {result['seed']} | {result['setting']} ({result['kernel']}) | " + " | ".join(cells)
            + f" | {verdict} | {result['seconds']:.0f} |")


def summary(results: list[dict]) -> dict:
    done = [r for r in results if "arithmetic" in r]
    points = lambda r, a, b: 100 * (r["arithmetic"][a]["score"] - r["arithmetic"][b]["score"])  # noqa: E731
    out = {"benchmark": "demo_robustness", "runs": len(results), "failed": len(results) - len(done),
           "gate_passed": sum(bool(r.get("gate", {}).get("passed")) for r in results)}
    pairs = {"sft_gain": ("sft", "base"), "dpo_minus_sft": ("dpo", "sft"), "final_minus_dpo": ("rlvr", "dpo"),
             "final_minus_sft": ("rlvr", "sft")}
    for name, (a, b) in pairs.items():
        gains = [points(r, a, b) for r in done if a in r["arithmetic"] and b in r["arithmetic"]]
        if gains:
            out[f"min_{name}"] = round(min(gains), 1)
            out[f"mean_{name}"] = round(statistics.mean(gains), 1)
            if name == "final_minus_sft":
                out["final_beats_sft"] = sum(g > 0 for g in gains)
    out["unit"] = "points of held-out arithmetic accuracy"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "tiny.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--settings", nargs="+", default=["native:2", "avx2:1"],
                        help="KERNEL:THREADS; KERNEL is native or an ATEN_CPU_CAPABILITY value (avx2, default)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (each uses its setting's threads)")
    parser.add_argument("--out", type=Path, help="keep every run's outputs here (default: a temporary directory)")
    parser.add_argument("--stop-after", default="rlvr", choices=["sft", "dpo", "rlvr"])
    parser.add_argument("--set", action="append", default=[], help="SECTION.FIELD=JSON, e.g. sft.epochs=2")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        runs = [(seed, setting) for seed in args.seeds for setting in args.settings]
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(launch, args, seed, setting, root / f"seed{seed}-{setting.replace(':', '-')}")
                       for seed, setting in runs]
            print("| seed | kernel:threads | base | sft | dpo | final (rlvr) | gate | seconds |")
            print("|---|---|---|---|---|---|---|---|")
            results = []
            for future in futures:
                results.append(future.result())
                print(row(results[-1]), flush=True)
                if "error" in results[-1]:
                    print("\n".join(results[-1]["log_tail"]), file=sys.stderr)
    for result in results:
        if "arithmetic" in result:
            print(f"seed {result['seed']} {result['setting']}: " + ", ".join(
                f"{label} carry {100 * r['carry']:.0f}% / no carry {100 * r['no_carry']:.0f}%"
                for label, r in result["arithmetic"].items()))
    print(json.dumps(summary(results) | {"seeds": args.seeds, "settings": args.settings,
                                         "overrides": args.set}))


if __name__ == "__main__":
    main()
