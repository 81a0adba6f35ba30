"""Run a training stage on every GPU of its pod: one process per GPU under torchrun, DeepSpeed as the recipe says.

A KFP component is one process. `run_stage` starts `torchrun --nproc_per_node=N` on this module when the
stage should use N > 1 processes, and otherwise calls the stage in this process. N is the stage's
`cluster.<stage>.gpus` when that many GPUs are visible, or `POSTTRAIN_NPROC` when set (on CPU the processes
talk over gloo: that is how the tests run a real two-process training). Inside, transformers' Trainer picks
up the distributed environment; rank 0 alone saves the tokenizer, the report and the manifest.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from importlib import import_module
from pathlib import Path

from posttrain.recipe import Recipe, loads
from posttrain.stage_table import DISTRIBUTED  # the stages whose trainers run data-parallel; PPO runs in one process
from posttrain.store import read_manifest


def processes(recipe: Recipe, stage: str) -> int:
    if stage not in DISTRIBUTED or (stage == "rlvr" and recipe.rlvr.algorithm == "ppo"):
        return 1
    if "POSTTRAIN_NPROC" in os.environ:
        return max(1, int(os.environ["POSTTRAIN_NPROC"]))
    import torch

    wanted = getattr(recipe.cluster, stage).gpus
    return wanted if wanted > 1 and torch.cuda.device_count() >= wanted else 1


def run_stage(stage: str, recipe: Recipe, *paths: str | Path) -> dict:
    """`posttrain.stages.<stage>.run(recipe, *paths)`, on as many processes as the stage should use; a stage
    with `cluster.<stage>.nodes` > 1, launched by the pipeline on a cluster, runs as a TrainJob instead."""
    multi_node = getattr(recipe.cluster, stage).nodes > 1
    if multi_node and "LOCAL_RANK" not in os.environ and os.environ.get("POSTTRAIN_IMAGE"):
        from posttrain.training import trainjob  # POSTTRAIN_IMAGE: set by the pipeline on multi-node stages only

        return trainjob.run(recipe, stage, paths[:-1], paths[-1])
    count = processes(recipe, stage)
    if count == 1 or "LOCAL_RANK" in os.environ:
        return import_module(f"posttrain.stages.{stage}").run(recipe, *paths)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        handle.write(recipe.to_yaml())
    try:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={count}",
                   "-m", "posttrain.training.launch", stage, handle.name, *map(str, paths)]
        print(f"{stage}: {count} processes: {' '.join(command)}", flush=True)
        subprocess.run(command, check=True)
    finally:
        os.unlink(handle.name)
    return read_manifest(paths[-1])["summary"]


if __name__ == "__main__":  # one rank, started by torchrun
    stage, recipe_file, *stage_paths = sys.argv[1:]
    import_module(f"posttrain.stages.{stage}").run(loads(Path(recipe_file).read_text()), *stage_paths)
