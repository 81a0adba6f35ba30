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
import re
import shutil
import time
from pathlib import Path

from posttrain.recipe import Recipe
from posttrain.store import file_digests, read_manifest, write_json

MARKER = "COMPLETED"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def numbered(root: str | Path) -> list[Path]:
    """`checkpoint-N` directories under `root`, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _CHECKPOINT.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found, reverse=True)]


def is_complete(checkpoint: Path) -> bool:
    marker = checkpoint / MARKER
    if not marker.is_file():
        return False
    try:
        expected = json.loads(marker.read_text())["files"]
    except (json.JSONDecodeError, KeyError):
        return False
    return file_digests(checkpoint, skip={MARKER}) == expected


def latest_complete(root: str | Path) -> Path | None:
    """The newest checkpoint that is whole, or None; incomplete ones are reported and skipped."""
    for checkpoint in numbered(root):
        if is_complete(checkpoint):
            return checkpoint
        print(f"resume: skipping {checkpoint}: no {MARKER} marker or its files changed")
    return None


def mark_complete(checkpoint: Path, step: int) -> None:
    """Write the `COMPLETED` marker (sha256 of every file) of a checkpoint whose files are all written."""
    marker = {"step": step, "files": file_digests(checkpoint, skip={MARKER})}
    tmp = checkpoint / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(marker))
    tmp.replace(checkpoint / MARKER)

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


def remote(recipe: Recipe, stage: str, inputs: dict[str, str | Path]) -> str | None:
    """`cluster.checkpoint_url/<stage>/<key>`, or None when the recipe names no URL."""
    url = recipe.cluster.checkpoint_url
    return f"{url.rstrip('/')}/{stage}/{key(stage, recipe.digest(), inputs)}" if url else None


def push(checkpoint: Path, url: str, keep: int) -> None:
    """Copy a complete checkpoint to `url/<its name>`, its marker last; keep the newest `keep` there."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    target = f"{root}/{checkpoint.name}"
    for path in sorted(checkpoint.rglob("*")):
        if path.is_file() and path.name != MARKER:
            fs.put_file(str(path), f"{target}/{path.relative_to(checkpoint)}")
    fs.put_file(str(checkpoint / MARKER), f"{target}/{MARKER}")
    for old in _remote_complete(fs, root)[keep:]:
        fs.rm(old, recursive=True)


def pull(url: str, local: Path) -> Path | None:
    """Fetch the newest complete checkpoint at `url` when it is newer than the newest one in `local` (a new
    pod has none); its marker comes last and its files are checked against it. Returns what it fetched."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    found = _remote_complete(fs, root)
    if not found:
        return None
    newest = found[0].rstrip("/").rsplit("/", 1)[1]
    have = latest_complete(local)
    if have is not None and int(have.name.split("-")[1]) >= int(newest.split("-")[1]):
        return None
    target = Path(local) / newest
    shutil.rmtree(target, ignore_errors=True)
    files = [f for f in fs.find(found[0]) if not f.endswith(f"/{MARKER}")]
    for name in files + [f"{found[0].rstrip('/')}/{MARKER}"]:
        relative = name[len(found[0].rstrip("/")) + 1:]
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(name, str(target / relative))
    if not is_complete(target):
        shutil.rmtree(target, ignore_errors=True)
        return None
    print(f"checkpoints: fetched {url}/{newest} into {target}", flush=True)
    return target


def drop(url: str | None) -> None:
    """Delete a key's checkpoints at `url` (after its stage sealed)."""
    if url:
        import fsspec

        fs, root = fsspec.core.url_to_fs(url)
        if fs.exists(root):
            fs.rm(root, recursive=True)


def _remote_complete(fs, root: str) -> list[str]:
    """Checkpoint directories under `root` that have a marker, newest first."""
    import re

    if not fs.exists(root):
        return []
    found = []
    for entry in fs.ls(root, detail=False):
        match = re.search(r"checkpoint-(\d+)/?$", entry)
        if match and fs.exists(f"{entry.rstrip('/')}/{MARKER}"):
            found.append((int(match.group(1)), entry))
    return [entry for _, entry in sorted(found, reverse=True)]
