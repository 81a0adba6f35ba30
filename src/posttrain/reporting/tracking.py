"""Experiment tracking: one MLflow run per stage, grouped under one parent run per pipeline run.

What each stage's run holds: its recipe section as params, per-step metrics (loss, learning rate, reward,
KL, completion length: `training.StepLog` and the PPO hook call `log_metrics`), the numbers of its manifest
summary, eval scores with their interval bounds, and the report as an artifact.

Grouping: the runs of one pipeline run share the tag `posttrain.group` and are children of one parent run
(`mlflow.parentRunId`), created by whichever stage comes first. The group is the KFP run id (`KFP_RUN_ID`,
set on a cluster from the pod's `pipeline/runid` label) or `POSTTRAIN_RUN_ID` (set by the local runner).

Failures are never lost silently: `preflight` (run by the local runner before the first stage, and by every
stage before it trains) fails fast with the URL in the message when the server does not answer; after that
MLflow's own HTTP client retries (MLFLOW_HTTP_REQUEST_MAX_RETRIES, exponential backoff) and a call that
still fails fails the stage.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from posttrain.recipe import Recipe
from posttrain.stage_table import STAGES

GROUP_ENVS = ("KFP_RUN_ID", "POSTTRAIN_RUN_ID")
RUN_ENV = "POSTTRAIN_TRACKING_RUN"  # the stage's run id, for torchrun's worker processes
# the recipe section a stage's run records as params (the stage table's `section`, else its own name)
SECTIONS = {name: stage.section or name for name, stage in STAGES.items()}
_active: "Tracker | None" = None


class TrackingError(RuntimeError):
    """The tracking server cannot be used; the message names it and the recipe field."""


def uri(recipe: Recipe) -> str | None:
    """The tracking URI: the recipe's, else MLFLOW_TRACKING_URI (the local runner points it at the run dir)."""
    return recipe.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI")


def local_uri(run_dir: str | Path) -> str:
    """The embedded default: an SQLite store inside the run directory (`mlflow ui --backend-store-uri` it)."""
    return f"sqlite:///{Path(run_dir).resolve() / 'mlflow.db'}"


def group() -> str | None:
    return next((os.environ[name] for name in GROUP_ENVS if os.environ.get(name)), None)


def mlflow_client(recipe: Recipe):
    """An MlflowClient on the recipe's tracking URI (also its Model Registry), and that URI."""
    from mlflow import MlflowClient

    target = uri(recipe)
    if not target:
        raise TrackingError("recipe.tracking.uri: no MLflow tracking URI (set it, or MLFLOW_TRACKING_URI, "
                            "or recipe.tracking.backend: none)")
    return MlflowClient(tracking_uri=target, registry_uri=target), target


def _artifact_location(target: str) -> str | None:
    # A local SQLite store keeps its artifacts beside it; a server chooses its own (--default-artifact-root).
    if target.startswith("sqlite:///"):
        return (Path(target.removeprefix("sqlite:///")).parent / "mlflow-artifacts").as_uri()
    return None


def preflight(recipe: Recipe, attempts: int = 1) -> None:
    """Fail now, with a message naming the server, if the tracker cannot be reached: before any training."""
    if recipe.tracking.backend != "mlflow":
        return
    target = uri(recipe)
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # not "Creating initial MLflow database tables"
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="10")
    try:
        for attempt in range(attempts):
            try:
                mlflow_client(recipe)[0].search_experiments(max_results=1)
                return
            except TrackingError:
                raise
            except Exception as exc:  # MlflowException, requests' errors, sqlalchemy's: all mean "unusable"
                if attempt == attempts - 1:
                    raise TrackingError(f"recipe.tracking.uri: MLflow at {target} is not usable: "
                                        f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
                time.sleep(2 ** attempt)
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


class Tracker:
    """One stage's MLflow run."""

    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id

    def log_metrics(self, values: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, float(value), now, step or 0) for key, value in values.items()]
        for start in range(0, len(metrics), 500):  # MLflow's batch limit is 1000 metrics
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 500])

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 90):  # the batch limit for params is 100
            self.client.log_batch(self.run_id, params=items[start:start + 90])

    def log_artifact(self, path: str | Path) -> None:
        self.client.log_artifact(self.run_id, str(path))


def active() -> Tracker | None:
    """The running stage's tracker (also inside torchrun's workers, through RUN_ENV)."""
    global _active
    if _active is None and os.environ.get(RUN_ENV) and os.environ.get("MLFLOW_TRACKING_URI"):
        from mlflow import MlflowClient

        _active = Tracker(MlflowClient(os.environ["MLFLOW_TRACKING_URI"]), os.environ[RUN_ENV])
    return _active


def _flatten(prefix: str, value) -> dict:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flatten(f"{prefix}.{key}" if prefix else key,
                                                                           item).items()}
    return {prefix: json.dumps(value) if isinstance(value, (list, tuple)) else value}


def _experiment(client, recipe: Recipe, target: str) -> str:
    name = recipe.tracking.experiment or recipe.name
    found = client.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=_artifact_location(target))


def _parent(client, experiment: str, recipe: Recipe, key: str) -> str:
    runs = client.search_runs([experiment], filter_string=f"tags.`posttrain.group` = '{key}' and "
                                                          "tags.`posttrain.kind` = 'pipeline'", max_results=1)
    if runs:
        return runs[0].info.run_id
    tags = {"posttrain.group": key, "posttrain.kind": "pipeline", "posttrain.recipe_sha256": recipe.digest()}
    if os.environ.get("KFP_RUN_ID"):
        tags["kfp.run_id"] = os.environ["KFP_RUN_ID"]
    return client.create_run(experiment, run_name=f"{recipe.name} {key}", tags=tags).info.run_id


def finish_parent(recipe: Recipe, key: str, status: str = "FINISHED", artifacts=()) -> str | None:
    """End the group's parent run, with `artifacts` (files) on it (the local runner calls this when the
    pipeline ends); returns its run id."""
    if recipe.tracking.backend != "mlflow":
        return None
    client, target = mlflow_client(recipe)
    experiment = _experiment(client, recipe, target)
    parent = _parent(client, experiment, recipe, key)
    for path in artifacts:
        client.log_artifact(parent, str(path))
    client.set_terminated(parent, status)
    return parent


@contextlib.contextmanager
def stage(recipe: Recipe, name: str, out_dir: str | Path | None = None):
    """Track one stage: a child run with the stage's recipe section as params; on exit the summary numbers
    of `out_dir`'s manifest as metrics, eval scores with intervals, reports as artifacts. Yields the
    Tracker (None when tracking is off)."""
    global _active
    if recipe.tracking.backend == "none":
        yield None
        return
    preflight(recipe)
    client, target = mlflow_client(recipe)
    experiment = _experiment(client, recipe, target)
    tags = {"posttrain.stage": name, "posttrain.recipe_sha256": recipe.digest()}
    if key := group():
        tags |= {"posttrain.group": key, "mlflow.parentRunId": _parent(client, experiment, recipe, key)}
    if os.environ.get("KFP_RUN_ID"):
        tags["kfp.run_id"] = os.environ["KFP_RUN_ID"]
    run = client.create_run(experiment, run_name=name, tags=tags)
    tracker = Tracker(client, run.info.run_id)
    section = getattr(recipe, SECTIONS.get(name, name), None)  # a name outside the table: that section, if any
    tracker.log_params(_flatten("", section.model_dump(mode="json")) if section is not None else {})
    _active = tracker
    previous_uri = os.environ.get("MLFLOW_TRACKING_URI")  # restored after: a caller's later runs go elsewhere
    os.environ.update({RUN_ENV: tracker.run_id, "MLFLOW_TRACKING_URI": target})
    status = "FAILED"
    try:
        yield tracker
        if out_dir is not None:
            record_outputs(tracker, Path(out_dir))
        status = "FINISHED"
    finally:
        _active = None
        os.environ.pop(RUN_ENV, None)
        if previous_uri is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_uri
        client.set_terminated(tracker.run_id, status)


def record_outputs(tracker: Tracker, out_dir: Path) -> None:
    """What a finished stage wrote that people compare across runs: summary numbers, scores, reports."""
    manifest = out_dir / "manifest.json"
    if manifest.is_file():
        summary = json.loads(manifest.read_text()).get("summary", {})
        tracker.log_metrics({f"summary/{k}": v for k, v in summary.items()
                             if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None}
                            | {"seconds": json.loads(manifest.read_text()).get("seconds") or 0.0})
    scores = out_dir / "scores.json"
    if scores.is_file():
        tracker.log_metrics(score_metrics(json.loads(scores.read_text())))
    for name in ("report.json", "report.html", "report.md", "progress.html"):
        if (out_dir / name).is_file():
            tracker.log_artifact(out_dir / name)


def score_metrics(scores: dict) -> dict[str, float]:
    """`<benchmark>/<model>` with `.../ci95_low` and `.../ci95_high` beside it."""
    found = {}
    for benchmark, by_model in scores["benchmarks"].items():
        for label, result in by_model.items():
            found[f"{benchmark}/{label}"] = result["score"]
            found[f"{benchmark}/{label}/ci95_low"], found[f"{benchmark}/{label}/ci95_high"] = result["ci95"]
    return found
