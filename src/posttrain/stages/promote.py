"""promote stage: the gate (thresholds and gain over the base model) and the create-only registry entry.

`decide` always runs and writes the report with the decision and its reasons; `register` runs only on pass.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import fsspec

from posttrain.recipe import Recipe
from posttrain.report import render_html, render_markdown
from posttrain.store import read_manifest, seal, write_json


def gate(recipe: Recipe, scores: dict) -> dict:
    """The decision: every check, and the reasons for a refusal."""
    cfg = recipe.promote
    candidate, baseline = scores["candidate"], scores["models"][0]
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
    reasons = [c["detail"] for c in checks if not c["passed"]]
    return {"passed": not reasons, "candidate": candidate, "checks": checks, "reasons": reasons}


def decide(recipe: Recipe, eval_dir: str | Path, out_dir: str | Path) -> dict:
    """Gate the eval scores; write `report.json`, `report.md` and `report.html` (scores + decision)."""
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
    }
    write_json(out_dir / "report.json", report)
    (out_dir / "report.md").write_text(render_markdown(report))
    (out_dir / "report.html").write_text(render_html(report))
    seal(out_dir, "gate", recipe.digest(), inputs={"eval": eval_dir},
         summary={"passed": decision["passed"], "reasons": decision["reasons"]})
    verdict = "PASS" if decision["passed"] else "REFUSED: " + "; ".join(decision["reasons"])
    print(f"promote: gate {verdict}")
    return report


def register(recipe: Recipe, model_dir: str | Path, report_dir: str | Path, registry: str | None = None) -> str:
    """Copy the candidate and its lineage into the registry; create-only, idempotent for the same model."""
    start = time.perf_counter()
    model_dir, report_dir = Path(model_dir), Path(report_dir)
    model_manifest, report_manifest = read_manifest(model_dir), read_manifest(report_dir)
    report = json.loads((report_dir / "report.json").read_text())
    if not report["gate"]["passed"]:
        raise RuntimeError(f"promote: refused by the gate: {'; '.join(report['gate']['reasons'])}")
    url = (registry or recipe.promote.registry).rstrip("/")
    version = model_manifest["sha256"][:16]
    entry_url = f"{url}/{recipe.name}/{version}"
    fs, path = fsspec.core.url_to_fs(entry_url)
    entry_file = f"{path}/entry.json"
    if fs.exists(entry_file):
        existing = json.loads(fs.cat_file(entry_file))
        if existing["model_sha256"] != model_manifest["sha256"]:
            raise FileExistsError(f"{entry_url}: registry entries are never overwritten")
        print(f"promote: {entry_url} already registered, nothing to do")
        return entry_url
    fs.makedirs(f"{path}/model", exist_ok=True)
    for name in model_manifest["files"]:
        fs.put_file(str(model_dir / name), f"{path}/model/{name}")
    fs.put_file(str(model_dir / "manifest.json"), f"{path}/model/manifest.json")
    fs.put_file(str(report_dir / "report.json"), f"{path}/report.json")
    entry = {
        "name": recipe.name,
        "version": version,
        "model_sha256": model_manifest["sha256"],
        "recipe_sha256": recipe.digest(),
        "recipe": recipe.model_dump(mode="json"),
        "lineage": {"model": model_manifest["inputs"], "report": report_manifest["sha256"]},
        "scores": {name: by_model[report["candidate"]]["score"] for name, by_model in report["benchmarks"].items()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with fs.open(entry_file, "w") as handle:  # written last: an entry without it is incomplete
        json.dump(entry, handle, indent=2)
    print(f"promote: registered {entry_url} in {time.perf_counter() - start:.1f}s")
    return entry_url
