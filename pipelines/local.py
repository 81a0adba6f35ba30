"""Run the pipeline on this machine with kfp.local's SubprocessRunner: the embedded default."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from kfp import local

from posttrain.pipelines import tulu3
from posttrain.recipe import Recipe
from posttrain.store import MANIFEST

ORDER = ("data", "base", "sft", "preference", "dpo", "rlvr", "eval", "gate")


def run(recipe: Recipe, out_dir: str | Path) -> dict:
    """Execute the whole pipeline; leave `report.json`, `report.md` and the KFP outputs in `out_dir`."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(out_dir / "kfp"),
               raise_on_error=True)
    task = tulu3.build(recipe)(recipe=recipe.to_yaml())
    report_dir = Path(task.output.path)
    for name in ("report.json", "report.md"):
        shutil.copyfile(report_dir / name, out_dir / name)
    report = json.loads((out_dir / "report.json").read_text())
    report["stages"] = stage_summaries(report_dir.parents[1])
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def stage_summaries(run_dir: Path) -> list[dict]:
    """Each stage's manifest (time and key numbers) from one local run, in pipeline order."""
    found = {}
    for path in run_dir.rglob(MANIFEST):
        manifest = json.loads(path.read_text())
        found[manifest["stage"]] = {"stage": manifest["stage"], "seconds": manifest["seconds"],
                                    "summary": manifest["summary"], "path": str(path.parent)}
    return [found[stage] for stage in ORDER if stage in found]
