"""Stage outputs on the artifact store: written into a directory, sealed by `manifest.json` written last.

A directory without a manifest is incomplete and is never read. The manifest lists every file with its size
and sha256, the recipe hash and the manifests of the inputs, which is the lineage a registry entry keeps.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


class IncompleteOutput(RuntimeError):
    """A stage output that has no manifest (the stage did not finish)."""


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_digests(directory: str | Path, skip: set[str] = frozenset()) -> dict[str, dict]:
    """Size and sha256 of every file under `directory` (hidden files and `skip` names excluded)."""
    directory = Path(directory)
    return {
        str(path.relative_to(directory)): {"bytes": path.stat().st_size, "sha256": sha256(path)}
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name not in skip and not path.name.startswith(".")
    }


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically: a temporary name in the same directory, then rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def write_jsonl(path: str | Path, rows) -> int:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    count = 0
    with open(tmp, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    os.replace(tmp, path)
    return count


class RowError(ValueError):
    """A row of a data file that cannot be used; the message names file, line and field."""


def iter_jsonl(path: str | Path):
    """(line number, parsed value) for every non-blank line; invalid JSON raises RowError naming the line."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise RowError(f"{path} line {number}: not valid JSON ({exc.msg})") from None


def read_jsonl(path: str | Path) -> list[dict]:
    rows = []
    for number, row in iter_jsonl(path):
        if not isinstance(row, dict):
            raise RowError(f"{path} line {number}: expected an object, got {type(row).__name__}")
        rows.append(row)
    return rows


def seal(out_dir: str | Path, stage: str, recipe_digest: str, inputs: dict[str, str | Path] | None = None,
         summary: dict[str, Any] | None = None, seconds: float | None = None) -> dict:
    """Write the manifest of a finished stage output; call it last."""
    out_dir = Path(out_dir)
    files = file_digests(out_dir, skip={MANIFEST})
    manifest = {
        "stage": stage,
        "recipe_sha256": recipe_digest,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": None if seconds is None else round(seconds, 2),
        "summary": summary or {},
        "inputs": {name: read_manifest(path)["sha256"] for name, path in (inputs or {}).items()},
        "files": files,
    }
    manifest["sha256"] = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    write_json(out_dir / MANIFEST, manifest)
    return manifest


def finished(out_dir: str | Path, stage: str, recipe_digest: str, inputs: dict[str, str | Path] | None = None):
    """The manifest when `out_dir` already holds this stage's output for these exact inputs, else None.

    A finished output made from anything else is never overwritten: that raises FileExistsError.
    """
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text())
    wanted = {name: read_manifest(p)["sha256"] for name, p in (inputs or {}).items()}
    if (manifest.get("stage"), manifest.get("recipe_sha256"), manifest.get("inputs")) == (stage, recipe_digest, wanted):
        print(f"{stage}: {out_dir} already holds this output for these inputs; skipped")
        return manifest
    raise FileExistsError(f"{out_dir}: holds a finished {manifest.get('stage')} output from other inputs or "
                          "another recipe; outputs are never overwritten, use a new directory")


def read_manifest(out_dir: str | Path) -> dict:
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise IncompleteOutput(f"{out_dir}: no {MANIFEST}; the stage that writes it did not finish")
    return json.loads(path.read_text())
