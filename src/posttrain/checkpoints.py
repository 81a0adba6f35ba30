"""Where a training stage keeps its checkpoints: a durable place keyed by what determines its result.

A stage's output directory is the KFP artifact path, local to its pod and uploaded only when the task ends,
so checkpoints kept there die with a preempted pod. When `POSTTRAIN_CHECKPOINTS` names a directory (the
pipeline sets it to the checkpoint volume's mount on the training stages; `posttrain run` sets it to
`<run dir>/checkpoints`), checkpoints go to `<that>/<stage>/<key>`, where the key hashes the stage, the
recipe digest and the sha256 of every input's manifest. A KFP retry, a rerun of the pipeline or a pod on
another node computes the same key and resumes from the newest complete checkpoint there; anything that
changes the result (another recipe, other inputs) gets a fresh key. Without the variable they stay in
`<stage output>/trainer`, as before.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from posttrain.recipe import Recipe
from posttrain.store import read_manifest, write_json

ENV = "POSTTRAIN_CHECKPOINTS"
KEY_FILE = "key.json"  # what the key was made from, for people looking at the volume


def key(stage: str, recipe_digest: str, inputs: dict[str, str | Path]) -> str:
    """The checkpoint key of `stage` for this recipe and these sealed inputs (their manifests' sha256)."""
    hashes = {name: read_manifest(path)["sha256"] for name, path in sorted(inputs.items())}
    text = json.dumps({"stage": stage, "recipe_sha256": recipe_digest, "inputs": hashes}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def directory(recipe: Recipe, stage: str, inputs: dict[str, str | Path], out_dir: str | Path) -> Path:
    """Where `stage` writes and resumes its checkpoints (see the module docstring)."""
    root = os.environ.get(ENV)
    if not root:
        return Path(out_dir) / "trainer"
    found = Path(root) / stage / key(stage, recipe.digest(), inputs)
    found.mkdir(parents=True, exist_ok=True)
    if not (found / KEY_FILE).exists() and os.environ.get("RANK", "0") == "0":  # one writer under torchrun
        write_json(found / KEY_FILE, {"stage": stage, "recipe": recipe.name, "recipe_sha256": recipe.digest(),
                                      "inputs": {n: read_manifest(p)["sha256"] for n, p in inputs.items()}})
    print(f"{stage}: checkpoints in {found}", flush=True)
    return found


def clean_stale(recipe: Recipe, stage: str) -> list[Path]:
    """After `stage` sealed its output: delete this stage's keys that nothing wrote to for longer than
    `cluster.checkpoint_retention_days` (abandoned runs). A key in use by another run is written to at
    every checkpoint, so it stays. Returns the deleted directories."""
    root = os.environ.get(ENV)
    if not root or not (Path(root) / stage).is_dir():
        return []
    horizon = time.time() - recipe.cluster.checkpoint_retention_days * 86400
    deleted = []
    for entry in (Path(root) / stage).iterdir():
        if entry.is_dir() and _last_write(entry) < horizon:
            shutil.rmtree(entry, ignore_errors=True)
            deleted.append(entry)
    if deleted:
        print(f"{stage}: deleted {len(deleted)} stale checkpoint key(s) under {Path(root) / stage}")
    return deleted


def _last_write(path: Path) -> float:
    return max([path.stat().st_mtime] + [p.stat().st_mtime for p in path.rglob("*")])
