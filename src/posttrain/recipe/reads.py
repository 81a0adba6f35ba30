"""Which recipe fields code reads: the dead-knob test and each stage's read set (posttrain.stage_table).

`recording(recipe)` copies the recipe and, while the block runs, records every read of a field of that copy as
its leaf path (`rlvr.clip`, `cluster.sft.gpus`; items of a tuple of sections share the tuple's path:
`data.sources.path`). Reading a section itself (`recipe.rlvr`) is not a read of its fields; serialising one
(`digest()`, `model_dump`) is not either: pydantic serialises in Rust, past `__getattribute__`, and a digest is
the stage's identity, not a use of any setting.
"""
from __future__ import annotations

import contextlib
from typing import Any

import yaml

from posttrain.recipe.sections import Section


def leaf_paths(data: Any, prefix: str = "") -> set[str]:
    """The dotted paths of the leaves of a parsed recipe mapping: what a recipe file sets. A list or a mapping
    whose keys are not fields (`max_new_tokens_for`, `node_selector`) counts as one leaf, the field holding it."""
    if not isinstance(data, dict):
        return {prefix}
    found: set[str] = set()
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        found |= leaf_paths(value, path) if isinstance(value, dict) and _is_section(path) else {path}
    return found


def set_in(text: str) -> set[str]:
    """The leaf paths a recipe file's text sets explicitly."""
    return leaf_paths(yaml.safe_load(text))


def _is_section(path: str) -> bool:
    """Whether `path` names a section (its keys are fields), not a mapping-valued field."""
    from posttrain.recipe import Recipe

    model: Any = Recipe
    for part in path.split("."):
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return False
        model = field.annotation
    return isinstance(model, type) and issubclass(model, Section)


def _paths(section: Section, path: str, found: dict[int, str]) -> None:
    found[id(section)] = path
    for name in type(section).model_fields:
        value = getattr(section, name)
        child = f"{path}.{name}" if path else name
        if isinstance(value, Section):
            _paths(value, child, found)
        elif isinstance(value, tuple):
            for item in value:
                if isinstance(item, Section):
                    _paths(item, child, found)


@contextlib.contextmanager
def recording(recipe):
    """Yield `(copy, reads)`: a fresh copy of `recipe` (its own section objects) and the set that collects the
    leaf paths read from it while the block runs."""
    from posttrain.recipe import parse

    copy = parse(recipe.model_dump(mode="json"), source="recording")
    where: dict[int, str] = {}
    _paths(copy, "", where)
    reads: set[str] = set()
    original = Section.__getattribute__

    def traced(self, name: str):
        value = original(self, name)
        if not name.startswith("_") and name in type(self).model_fields and not isinstance(value, Section):
            path = where.get(id(self))
            if path is not None:
                reads.add(f"{path}.{name}" if path else name)
        return value

    Section.__getattribute__ = traced
    try:
        yield copy, reads
    finally:
        Section.__getattribute__ = original
