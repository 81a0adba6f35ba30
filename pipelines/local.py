"""Run the pipeline on this machine with kfp.local's SubprocessRunner: the embedded default."""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

from kfp import local

from posttrain.reporting import progress, tracking
from posttrain.training.checkpoints import ENV as CHECKPOINTS_ENV
from posttrain.pipelines import tulu3
from posttrain.pipelines.console import Display, StageFailed, StageLogs
from posttrain.recipe import Cluster, Recipe
from posttrain.reporting.report import render_html, render_markdown
from posttrain.stage_table import NAMES as ORDER
from posttrain.store import MANIFEST


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """Set environment variables for the stage subprocesses (kfp.local passes the parent's environment on)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def run(recipe: Recipe, out_dir: str | Path, out=None, live: bool | None = None) -> dict:
    """Execute the whole pipeline; leave `report.{json,md,html}` (with stage times), `logs/<stage>.log`, the
    tracking store (local default) and the KFP outputs in `out_dir`. Shows the stages on `out` (default
    stdout; a live display when it is a terminal). Raises `StageFailed` naming a failed stage and its log."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out or sys.stdout
    live = out.isatty() if live is None else live
    (out_dir / "progress").mkdir(exist_ok=True)
    env = {progress.ENV: str(out_dir / "progress"), "POSTTRAIN_RUN_ID": f"local-{time.strftime('%Y%m%d-%H%M%S')}",
           # the training stages' checkpoints, outside their outputs: an interrupted stage resumes from them
           CHECKPOINTS_ENV: os.environ.get(CHECKPOINTS_ENV) or str(out_dir / "checkpoints")}
    if recipe.tracking.backend == "mlflow" and not recipe.tracking.uri and not os.environ.get("MLFLOW_TRACKING_URI"):
        env["MLFLOW_TRACKING_URI"] = tracking.local_uri(out_dir)
    logs = StageLogs(out_dir / "logs")
    with _environment(env):
        tracking.preflight(recipe)  # a tracker that does not answer stops the run before any stage starts
        failed = None
        try:
            with Display(logs, out_dir / "progress", out, ORDER + ("promote",), live) as display, \
                    contextlib.redirect_stdout(logs), contextlib.redirect_stderr(logs):
                # Running again on the same directory reuses every task whose inputs are unchanged: kfp.local's
                # cache keys a task by its code, its parameters (its view of the recipe: the sections it reads,
                # stage_table.py) and its input artifacts' URIs, and a URI here is never rewritten (outputs are
                # create-only). Eval, gate and promote opt out of it (tulu3.py).
                local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(out_dir / "kfp"),
                           raise_on_error=True, enable_caching=True)
                # The cluster section means nothing here (no volume, no TrainJob): compile without it.
                on_this_machine = recipe.model_copy(update={"cluster": Cluster(checkpoint_volume=None)})
                try:
                    task = tulu3.build(on_this_machine)(recipe=recipe.to_yaml())
                except RuntimeError as exc:
                    if (failed := display.failure(exc)) is None:
                        raise
        finally:
            logs.close()
        if failed:
            with contextlib.suppress(Exception):  # the stage's failure is the news; a tracker error would hide it
                tracking.finish_parent(recipe, env["POSTTRAIN_RUN_ID"], "FAILED")
            raise failed
        report_dir = Path(task.output.path)
    report = json.loads((report_dir / "report.json").read_text())
    report["stages"] = stage_summaries(out_dir / "kfp", lineage_of=report_dir)
    report["data_report"] = data_numbers(report["stages"])
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "report.md").write_text(render_markdown(report))
    (out_dir / "report.html").write_text(render_html(report))
    with _environment(env):  # the pipeline's parent run ends with the whole report on it
        tracking.finish_parent(recipe, env["POSTTRAIN_RUN_ID"], "FINISHED",
                               [out_dir / name for name in ("report.html", "report.md", "report.json")])
    return report


def data_numbers(stages: list[dict]) -> dict:
    """The data report's key numbers, for the report page."""
    found = [s for s in stages if s["stage"] == "data"]
    if not found or not (Path(found[0]["path"]) / "report.json").is_file():
        return {}
    data = json.loads((Path(found[0]["path"]) / "report.json").read_text())
    return {"rows": data["rows"], "duplicates": data.get("duplicates_dropped", {}),
            "quarantined": data.get("quarantined", 0),
            "decontaminated": {split: sum(hit.get("rows_removed", 0) for hit in found.get("by_eval_set", {}).values())
                               for split, found in data.get("decontamination", {}).items()}}


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
    # The stage's full output, relative to the run directory (report.html links to it).
    return [found[stage] | {"log": f"logs/{stage}.log"} for stage in ORDER if stage in found]
