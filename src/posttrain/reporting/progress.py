"""Per-step progress of a stage: a small JSON file the local runner's display polls, and the step log.

A stage runs in its own process (a kfp.local subprocess, a pod on a cluster). When `POSTTRAIN_PROGRESS_DIR` is
set (the local runner sets it), `report` rewrites `<dir>/<stage>.json` with the step, the total and the latest
metrics; the parent reads it to draw a bar with an ETA. Unset (a cluster, a test), it does nothing.
`training.StepLog` feeds it, and the experiment tracker, from every trainer's logs; `step_hook` from our PPO loop.
Nothing here imports transformers: the parent process reads these files too.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

ENV = "POSTTRAIN_PROGRESS_DIR"
# What a person watches for each stage, in this order of preference, shown beside the bar.
KEY_METRICS = ("reward", "loss", "score")


def report(stage: str, step: int, total: int | None, metrics: dict | None = None) -> None:
    """Record that `stage` is at `step` of `total` (None: unknown), with its latest metrics."""
    root = os.environ.get(ENV)
    if not root:
        return
    path = Path(root) / f"{stage}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"stage": stage, "step": step, "total": total, "metrics": metrics or {},
                               "time": time.time()}))
    tmp.replace(path)  # the reader never sees half a file


def read(root: str | Path, stage: str) -> dict | None:
    try:
        return json.loads((Path(root) / f"{stage}.json").read_text())
    except (OSError, ValueError):
        return None


def numbers(logs: dict) -> dict[str, float]:
    """The finite numeric entries of a trainer log (TRL logs strings and lists too)."""
    return {k: float(v) for k, v in logs.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def step_hook(stage: str, total: int, tracker=None):
    """The same for a loop of our own (PPO): call it with each step's log entry (which holds `step`)."""
    def hook(entry: dict) -> None:
        values = numbers(entry)
        step = int(values.pop("step"))
        report(stage, step, total, values)
        if tracker is not None:
            tracker.log_metrics(values, step=step)

    return hook
