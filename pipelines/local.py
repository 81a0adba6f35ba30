"""Run the pipeline on this machine with kfp.local's SubprocessRunner: the embedded default."""
from __future__ import annotations

import json
import os
from pathlib import Path

from kfp import local

from posttrain.checkpoints import ENV
from posttrain.pipelines import tulu3
from posttrain.recipe import Cluster, Recipe
from posttrain.report import render_html, render_markdown
from posttrain.store import MANIFEST

ORDER = ("data", "base", "sft", "preference", "dpo", "rlvr", "eval", "gate")


def run(recipe: Recipe, out_dir: str | Path) -> dict:
    """Execute the whole pipeline; leave `report.{json,md,html}` (with stage times) and the KFP outputs in `out_dir`."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    # Running again on the same directory reuses every task whose inputs are unchanged: kfp.local's cache
    # keys a task by its code, its parameters (the recipe) and its input artifacts' URIs, and a URI here
    # is never rewritten (outputs are create-only). Eval, gate and promote opt out of it (tulu3.py). The
    # training stage that was interrupted resumes from its checkpoints, kept outside the task's output.
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(out_dir / "kfp"),
               raise_on_error=True, enable_caching=True)
    previous = os.environ.get(ENV)
    os.environ[ENV] = previous or str(out_dir / "checkpoints")  # read by the stages' subprocesses
    try:
        # The cluster section means nothing here (no volume, no TrainJob): compile without it, run the recipe.
        on_this_machine = recipe.model_copy(update={"cluster": Cluster(checkpoint_volume=None)})
        task = tulu3.build(on_this_machine)(recipe=recipe.to_yaml())
    finally:
        if previous is None:
            del os.environ[ENV]
    report_dir = Path(task.output.path)
    report = json.loads((report_dir / "report.json").read_text())
    report["stages"] = stage_summaries(out_dir / "kfp", lineage_of=report_dir)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "report.md").write_text(render_markdown(report))
    (out_dir / "report.html").write_text(render_html(report))
    return report


def stage_summaries(run_dir: Path, lineage_of: Path | None = None) -> list[dict]:
    """Each stage's manifest (time and key numbers) under `run_dir`, in pipeline order. With `lineage_of`
    (a stage output), only that output and what it was made from, followed through the manifests' input
    hashes: a rerun's stages may lie in earlier runs' directories."""
    manifests = {path: json.loads(path.read_text()) for path in run_dir.rglob(MANIFEST)}
    if lineage_of is not None:
        by_hash = {m["sha256"]: (path, m) for path, m in manifests.items()}
        wanted, manifests = [Path(lineage_of) / MANIFEST], {}
        while wanted:
            path = wanted.pop()
            if path in manifests:
                continue
            manifests[path] = json.loads(path.read_text())
            wanted += [by_hash[h][0] for h in manifests[path]["inputs"].values() if h in by_hash]
    found = {}
    for path, manifest in manifests.items():
        found[manifest["stage"]] = {"stage": manifest["stage"], "seconds": manifest["seconds"],
                                    "summary": manifest["summary"], "path": str(path.parent)}
    return [found[stage] for stage in ORDER if stage in found]
