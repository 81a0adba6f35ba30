"""The model registry on any fsspec store: `<registry>/<name>/<version>/{model/, report.json, entry.json}`.

Entries are create-only. `entry.json` is written last, so a directory without it is an interrupted
promotion and is ignored; registering the same model again is a no-op; anything else under an existing
entry is refused.
"""
from __future__ import annotations

import json
from pathlib import Path

import fsspec

ENTRY = "entry.json"


class RegistryError(RuntimeError):
    """A registry operation that would overwrite or cannot find an entry."""


def _fs(url: str):
    return fsspec.core.url_to_fs(url.rstrip("/"))


def create(registry: str, name: str, version: str, files: dict[str, Path], entry: dict) -> str:
    """Upload `files` (relative name -> local path) and seal them with `entry`; returns the entry URL."""
    url = f"{registry.rstrip('/')}/{name}/{version}"
    fs, root = _fs(url)
    if fs.exists(f"{root}/{ENTRY}"):
        existing = json.loads(fs.cat_file(f"{root}/{ENTRY}"))
        if existing.get("model_sha256") != entry["model_sha256"]:
            raise RegistryError(f"{url}: already holds model {existing.get('model_sha256', '?')[:12]}; "
                                "registry entries are never overwritten")
        return url
    for relative, local in sorted(files.items()):
        fs.makedirs(f"{root}/{Path(relative).parent}".rstrip("/."), exist_ok=True)
        fs.put_file(str(local), f"{root}/{relative}")
    with fs.open(f"{root}/{ENTRY}", "w") as handle:
        json.dump({**entry, "url": url}, handle, indent=2)
    return url


def entries(registry: str, name: str | None = None) -> list[dict]:
    """Every complete entry (optionally of one recipe name), oldest first."""
    fs, root = _fs(registry)
    if not fs.exists(root):
        return []
    pattern = f"{root}/{name or '*'}/*/{ENTRY}"
    found = [json.loads(fs.cat_file(path)) for path in fs.glob(pattern)]
    return sorted(found, key=lambda e: (e["created"], e["version"]))


def latest(registry: str, name: str) -> dict | None:
    found = entries(registry, name)
    return found[-1] if found else None


def show(registry: str, name: str, version: str) -> dict:
    fs, root = _fs(f"{registry.rstrip('/')}/{name}/{version}")
    if not fs.exists(f"{root}/{ENTRY}"):
        raise RegistryError(f"{registry}: no entry {name}/{version}")
    return json.loads(fs.cat_file(f"{root}/{ENTRY}"))


def fetch_model(entry: dict, dest: str | Path) -> Path:
    """Download an entry's model directory to `dest`."""
    fs, root = _fs(entry["url"])
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    fs.get(f"{root}/model/", str(dest), recursive=True)
    return dest
