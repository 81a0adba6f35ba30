"""promote stage: the gate (thresholds and gain over the base model) and the create-only registry entry.

`decide` always runs and writes the report with the decision and its reasons; `register` runs only on pass.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from posttrain import registry as registry_store
from posttrain.evals.intervals import paired_difference_ci
from posttrain.recipe import Recipe
from posttrain.reporting.report import render_html, render_markdown
from posttrain.store import MANIFEST, read_manifest, seal, write_json
from posttrain.training import lora


def gate(recipe: Recipe, scores: dict) -> dict:
    """The decision: every check, and the reasons for a refusal."""
    cfg = recipe.promote
    candidate, baseline, promoted = scores["candidate"], scores["baseline"], scores.get("promoted")
    checks = []
    for benchmark, minimum in sorted(cfg.min_accuracy.items()):
        result = scores["benchmarks"].get(benchmark)
        if result is None:
            checks.append({"check": f"{benchmark} scored", "passed": False,
                           "detail": f"{benchmark}: required by recipe.promote.min_accuracy but not evaluated"})
            continue
        score = result[candidate]["score"]
        checks.append({"check": f"{benchmark} >= {minimum:.3f}", "passed": score >= minimum,
                       "detail": f"{benchmark}: {candidate} scored {score:.3f}, minimum {minimum:.3f}"})
        gain = score - result[baseline]["score"]
        checks.append({"check": f"{benchmark} gain over {baseline} >= {cfg.min_gain_over_base:+.3f}",
                       "passed": gain >= cfg.min_gain_over_base,
                       "detail": f"{benchmark}: {candidate} {gain:+.3f} over {baseline}, "
                                 f"minimum {cfg.min_gain_over_base:+.3f}"})
    data = scores.get("data", {})
    for benchmark, eval_set in sorted(data.get("eval_sets", {}).items()):
        clean = eval_set in data.get("decontaminated_against", [])
        checks.append({"check": f"training data decontaminated against {eval_set}", "passed": clean,
                       "detail": f"{benchmark}: training data " + ("was" if clean else "was not")
                                 + f" decontaminated against {eval_set}"})
    if promoted:
        for benchmark, result in sorted(scores["benchmarks"].items()):
            low, high = paired_difference_ci(result[candidate]["outcomes"], result[promoted]["outcomes"])
            diff = result[candidate]["score"] - result[promoted]["score"]
            checks.append({"check": f"{benchmark} no regression against {promoted}", "passed": high >= 0,
                           "detail": f"{benchmark}: {candidate} {diff:+.3f} against the promoted model "
                                     f"(95% interval [{low:+.3f}, {high:+.3f}])"})
    reasons = [c["detail"] for c in checks if not c["passed"]]
    return {"passed": not reasons, "candidate": candidate, "checks": checks, "reasons": reasons}


def decide(recipe: Recipe, eval_dir: str | Path, out_dir: str | Path) -> dict:
    """Gate the eval scores; write `report.json`, `report.md` and `report.html` (scores + decision)."""
    start = time.perf_counter()
    eval_dir, out_dir = Path(eval_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    read_manifest(eval_dir)
    scores = json.loads((eval_dir / "scores.json").read_text())
    decision = gate(recipe, scores)
    report = {
        "recipe": recipe.name,
        "recipe_sha256": recipe.digest(),
        "models": scores["models"],
        "candidate": scores["candidate"],
        "benchmarks": {
            name: {label: {k: v for k, v in result.items() if k != "outcomes"} for label, result in by_model.items()}
            for name, by_model in scores["benchmarks"].items()
        },
        "gate": decision,
        "sandbox": scores.get("sandbox"),  # how the eval's model-written code was boxed
        "limited": scores.get("limited", {}),  # benchmark -> {n, of}: eval.limit scored the first n of N items
        "baselines": scores.get("baselines", {}),  # label -> Hub name or path, scored by the same harness
        "gaps": scores.get("gaps", {}),  # benchmark -> [{model, baseline, gap, ci95}], paired on the same items
    }
    write_json(out_dir / "report.json", report)
    (out_dir / "report.md").write_text(render_markdown(report))
    (out_dir / "report.html").write_text(render_html(report))
    seal(out_dir, "gate", recipe.digest(), inputs={"eval": eval_dir},
         summary={"passed": decision["passed"], "reasons": decision["reasons"]}, seconds=time.perf_counter() - start)
    verdict = "PASS" if decision["passed"] else "REFUSED: " + "; ".join(decision["reasons"])
    print(f"promote: gate {verdict}")
    return report


def register(recipe: Recipe, model_dir: str | Path, report_dir: str | Path, registry: str | None = None) -> str:
    """Copy the candidate and its lineage into the registry; create-only, idempotent for the same model."""
    model_dir, report_dir = Path(model_dir), Path(report_dir)
    model_manifest, report_manifest = read_manifest(model_dir), read_manifest(report_dir)
    report = json.loads((report_dir / "report.json").read_text())
    if not report["gate"]["passed"]:
        raise RuntimeError(f"promote: refused by the gate: {'; '.join(report['gate']['reasons'])}")
    files = {f"model/{name}": model_dir / name for name in [*model_manifest["files"], MANIFEST]}
    files["report.json"] = report_dir / "report.json"
    entry = {
        "name": recipe.name,
        "version": model_manifest["sha256"][:16],
        "model_sha256": model_manifest["sha256"],
        "recipe_sha256": recipe.digest(),
        "recipe": recipe.model_dump(mode="json"),
        "lineage": {"model": model_manifest["inputs"], "report": report_manifest["sha256"]},
        # A LoRA adapter: the base it needs (digest of the stage output it was trained on) and its own digest;
        # None: full weights
        "adapter": lora.lineage(model_dir),
        "scores": {name: by_model[report["candidate"]]["score"] for name, by_model in report["benchmarks"].items()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    url = registry_store.create(registry or recipe.promote.registry, recipe.name, entry["version"], files, entry)
    print(f"promote: {recipe.name} {entry['version']} registered at {url}")
    # Then the registry service deployments follow (MLflow / Kubeflow): a version pointing at the entry, and
    # the alias moved. A failure here fails the stage; a rerun finds the entry and the version and goes on.
    from posttrain import model_registry
    from posttrain.reporting import tracking

    run = tracking.active()
    model_registry.register(recipe, {**entry, "url": url}, run.run_id if run else None)
    return url
