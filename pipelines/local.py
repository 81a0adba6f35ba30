"""Run the pipeline on this machine with kfp.local's SubprocessRunner: the embedded default."""
from __future__ import annotations

import json
from pathlib import Path

from kfp import local

from posttrain.pipelines import tulu3
from posttrain.recipe import Recipe
from posttrain.report import render_html, render_markdown
from posttrain.stage_table import NAMES as ORDER
from posttrain.store import MANIFEST


def run(recipe: Recipe, out_dir: str | Path) -> dict:
    """Execute the whole pipeline; leave `report.{json,md,html}` (with stage times) and the KFP outputs in `out_dir`."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(out_dir / "kfp"),
               raise_on_error=True)
    task = tulu3.build(recipe)(recipe=recipe.to_yaml())
    report_dir = Path(task.output.path)
    report = json.loads((report_dir / "report.json").read_text())
    report["stages"] = stage_summaries(report_dir.parents[1])
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "report.md").write_text(render_markdown(report))
    (out_dir / "report.html").write_text(render_html(report))
    return report


def stage_summaries(run_dir: Path) -> list[dict]:
    """Each stage's manifest (time and key numbers) from one local run, in pipeline order."""
    found = {}
    for path in run_dir.rglob(MANIFEST):
        manifest = json.loads(path.read_text())
        found[manifest["stage"]] = {"stage": manifest["stage"], "seconds": manifest["seconds"],
                                    "summary": manifest["summary"], "path": str(path.parent)}
    return [found[stage] for stage in ORDER if stage in found]
