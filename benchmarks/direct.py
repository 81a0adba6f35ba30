"""Every stage of the pipeline in one process, in pipeline order, the way the components call them.

Shared by the benchmarks that measure what the stages do without kfp.local around them, and by the test that
records what each stage reads (tests/test_stage_reads.py). The graph is posttrain.stage_table's.
"""
from __future__ import annotations

import contextlib
from importlib import import_module
from functools import partial
from pathlib import Path

from posttrain.stage_table import STAGES
from posttrain.training.launch import run_stage

TRAINED = tuple(name for name, stage in STAGES.items() if stage.output == "model")
DIRS = {"preference": "pairs"}  # output directory names other than the stage's (benchmarks read them)


def run(recipe, out: Path, last: str = "rlvr", around=None) -> None:
    """Train up to and including the `last` model, score every model trained; gate and promote a whole run.

    `around(stage, recipe)`, when given, is a context manager around each stage that yields the recipe the
    stage is called with."""
    around = around or (lambda stage, recipe: contextlib.nullcontext(recipe))
    skipped = set(TRAINED[TRAINED.index(last) + 1:])
    done: dict[str, Path] = {}
    results: dict[str, dict] = {}
    for name, stage in STAGES.items():
        if name in skipped or any(up in skipped for up in stage.inputs.values() if name != "eval"):
            skipped.add(name)
            continue
        if stage.when and not results[stage.when]["gate"]["passed"]:
            continue
        if name == "eval":  # the models trained so far, each under its stage's name
            args = (done["data"], {up: done[up] for key, up in stage.inputs.items() if key != "dataset" and up in done})
        else:
            args = tuple(done[up] for up in stage.inputs.values())
        if stage.output:  # promote writes only the registry entry
            done[name] = out / DIRS.get(name, name)
            args = (*args, done[name])
        # the training stages through the launcher, as their components call them
        entry = partial(run_stage, name) if stage.distributed else getattr(import_module(stage.logic), stage.entry)
        with around(name, recipe) as given:
            results[name] = entry(given, *args)
        if name == "eval" and skipped:  # the gate decides about a whole run only
            break
