"""Does the demo hold on other machines? The demo recipe under several seeds x CPU kernel/thread settings.

    python benchmarks/demo_robustness.py [--recipe recipes/tiny.yaml] [--seeds 0 1 2]
        [--settings native:2 avx2:1] [--jobs 1] [--out DIR] [--stop-after rlvr] [--set sft.epochs=2 ...]
        [--regate]

Each run is a fresh process that runs the recipe's stages (the demo's stage code, `benchmarks/direct.py`) with
`recipe.seed` set to the run's seed, `ATEN_CPU_CAPABILITY` set to the setting's kernel (`native` leaves it
unset; `avx2` and `default` stand in for CPUs without AVX-512, or without AVX2) and torch limited to the
setting's thread count: different float rounding, as on another machine. Prints one row per run (held-out
arithmetic accuracy of every model with its 95% interval, gate verdict, wall time) and, last, one JSON line:
the minimum SFT gain over the base model, the runs that pass the gate, mean and minimum DPO - SFT and
final - DPO, and in how many runs the final model beats the SFT model. Each run keeps the recipe it trained
with (`recipe.yaml`); `--regate` decides the gate of finished runs again when only `promote` changed.
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


def run_recipe(args: argparse.Namespace, seed: int, out: Path):
    """The recipe a run trains with: the file, the `--set` overrides, the run's seed, and a registry and an
    MLflow store inside the run's directory (as the demo keeps them in its own)."""
    from posttrain.recipe import load

    recipe = load(args.recipe)
    for assignment in args.set:
        key, value = assignment.split("=", 1)
        section, field = key.split(".", 1)
        recipe = recipe.override(**{section: {field: json.loads(value)}})
    recipe = recipe.override(promote={"registry": (out / "registry").as_uri()},
                             tracking={"uri": f"sqlite:///{out / 'mlflow.db'}"})
    return type(recipe).model_validate({**recipe.model_dump(), "seed": seed})


def child(args: argparse.Namespace) -> None:
    """One run, in this process: the environment already holds the kernel and thread settings."""
    import torch

    import direct

    torch.set_num_threads(args.threads)
    recipe = run_recipe(args, args.seed, args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "recipe.yaml").write_text(recipe.to_yaml())  # what --regate checks the run's outputs against
    start = time.perf_counter()
    direct.run(recipe, args.out, last=args.stop_after)
    write_result(args.out, args.seed, torch.backends.cpu.get_cpu_capability(), args.threads,
                 time.perf_counter() - start)


def write_result(out: Path, seed: int, kernel: str, threads: int, seconds: float) -> dict:
    """`result.json` of a run: held-out arithmetic per model (overall, with and without a leading carry) and
    the gate's verdict."""
    result = {"seed": seed, "kernel": kernel, "threads": threads, "seconds": round(seconds, 1)}
    if (out / "eval" / "scores.json").exists():
        scores = json.loads((out / "eval" / "scores.json").read_text())["benchmarks"]["arithmetic"]
        rows = [json.loads(line) for line in (out / "data" / "heldout.jsonl").read_text().splitlines()]
        from posttrain.data.arithmetic import leading_carry

        carry = [leading_carry(*r["operands"], r["operation"]) for r in rows]
        result["arithmetic"] = {
            label: {"score": r["score"], "ci95": r["ci95"],
                    # the problems where the SFT teacher can slip, and the rest
                    "carry": statistics.mean(o for o, c in zip(r["outcomes"], carry) if c),
                    "no_carry": statistics.mean(o for o, c in zip(r["outcomes"], carry) if not c)}
            for label, r in scores.items()}
    from posttrain.store import read_manifest

    for stage in ("sft", "dpo", "rlvr"):  # what each training stage trained and its peak memory (LoRA vs full)
        summary = read_manifest(out / stage).get("summary") or {} if (out / stage / "manifest.json").exists() else {}
        if "trainable_parameters" in summary:
            result.setdefault("training", {})[stage] = {
                key: summary.get(key) for key in ("trainable_parameters", "parameters", "peak_memory_mb")}
    if (out / "gate" / "report.json").exists():
        gate = json.loads((out / "gate" / "report.json").read_text())["gate"]
        result["gate"] = {"passed": gate["passed"], "reasons": gate["reasons"]}
    (out / "result.json").write_text(json.dumps(result, indent=2))
    return result


def regate(args: argparse.Namespace, seed: int, setting: str, out: Path) -> None:
    """Decide a finished run's gate again under the current recipe's `promote` section, and register the model
    when it passes. Only the gate changes: the run's own recipe (its `recipe.yaml`, checked against the digest
    its eval stage sealed) trained and scored the models, and must differ from the current one in `promote`
    alone, else this refuses."""
    from posttrain.recipe import load
    from posttrain.stages import promote
    from posttrain.store import read_manifest

    if not (out / "eval" / "scores.json").exists():
        return
    ran = load(out / "recipe.yaml")
    if ran.digest() != read_manifest(out / "eval")["recipe_sha256"]:
        raise SystemExit(f"{out / 'recipe.yaml'}: not the recipe the run's eval stage used")
    now = run_recipe(args, seed, out)
    if ran.model_dump(exclude={"promote", "tracking"}) != now.model_dump(exclude={"promote", "tracking"}):
        raise SystemExit(f"{out}: the recipe differs from this run's in more than promote; rerun it instead")
    recipe = ran.override(promote=now.promote.model_dump(mode="json"), tracking=now.tracking.model_dump(mode="json"))
    passed = promote.decide(recipe, out / "eval", out / "gate")["gate"]["passed"]
    if passed and (out / "rlvr" / "manifest.json").exists():  # as direct.run: a whole run's model is registered
        promote.register(recipe, out / "rlvr", out / "gate")
    old = json.loads((out / "result.json").read_text()) if (out / "result.json").exists() else {}
    stages = [out / stage for stage in ("data", "base", "sft", "pairs", "dpo", "rlvr", "eval")]
    seconds = old.get("seconds") or sum(read_manifest(stage).get("seconds") or 0  # a run that stopped late
                                        for stage in stages if (stage / "manifest.json").exists())
    kernel = old.get("kernel") or setting.split(":")[0].upper()
    if kernel == "NATIVE":
        import torch

        kernel = torch.backends.cpu.get_cpu_capability()
    write_result(out, seed, kernel, int(setting.split(":")[1]), seconds)


def launch(args: argparse.Namespace, seed: int, setting: str, out: Path) -> dict:
    kernel, threads = setting.split(":")
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false"}
    env.pop("ATEN_CPU_CAPABILITY", None)
    if kernel != "native":
        env["ATEN_CPU_CAPABILITY"] = kernel
    if (out / "result.json").exists():  # a finished run of an earlier invocation with the same --out
        return json.loads((out / "result.json").read_text()) | {"setting": setting}
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
    for stage in ("sft", "dpo", "rlvr"):  # trainable parameters and mean peak resident memory (MB) per stage
        figures = [r["training"][stage] for r in done if stage in r.get("training", {})]
        if figures:
            out[f"{stage}_trainable"] = f"{figures[0]['trainable_parameters']:,} of {figures[0]['parameters']:,}"
            out[f"{stage}_peak_mb"] = round(statistics.mean(f["peak_memory_mb"] for f in figures))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "tiny.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--settings", nargs="+", default=["native:2", "avx2:1"],
                        help="KERNEL:THREADS; KERNEL is native or an ATEN_CPU_CAPABILITY value (avx2, default)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (each uses its setting's threads)")
    parser.add_argument("--out", type=Path, help="keep every run's outputs here (default: a temporary directory); "
                        "runs that finished there before are reused")
    parser.add_argument("--stop-after", default="rlvr", choices=["sft", "dpo", "rlvr"])
    parser.add_argument("--set", action="append", default=[], help="SECTION.FIELD=JSON, e.g. sft.epochs=2")
    parser.add_argument("--regate", action="store_true", help="decide the gate of finished runs in --out again "
                        "under the recipe's current promote section (training unchanged), then print as usual")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        runs = [(seed, setting) for seed in args.seeds for setting in args.settings]
        folder = {(seed, setting): root / f"seed{seed}-{setting.replace(':', '-')}" for seed, setting in runs}
        if args.regate:
            for seed, setting in runs:
                regate(args, seed, setting, folder[seed, setting])
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(launch, args, seed, setting, folder[seed, setting]) for seed, setting in runs]
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
