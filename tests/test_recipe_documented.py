"""The recipe package's promise, "every field documented with a comment giving units/meaning", checked.

A field is documented by a comment on its own line (trailing) or on the line right above it; a field holding
a section is documented by that section's fields; `Cluster`'s per-stage fields, made from the stage table, are
documented where they are made. Every field of
every section of the schema must be found in the source, and documented there.
"""
import ast
import io
import tokenize
from pathlib import Path

from pydantic import BaseModel

import posttrain.recipe as recipe_package
from posttrain.recipe import Recipe, Section

SOURCES = sorted(Path(recipe_package.__file__).parent.glob("*.py"))


def _comment_lines(text: str) -> set[int]:
    return {token.start[0] for token in tokenize.generate_tokens(io.StringIO(text).readline)
            if token.type == tokenize.COMMENT}


def documented_fields() -> dict[str, dict[str, bool]]:
    """class name -> field -> whether a comment documents it, from the package's source."""
    found: dict[str, dict[str, bool]] = {}
    for path in SOURCES:
        text = path.read_text()
        comments, lines = _comment_lines(text), text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.ClassDef):
                continue
            fields = found.setdefault(node.name, {})
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    trailing = any(n in comments for n in range(item.lineno, item.end_lineno + 1))
                    above = lines[item.lineno - 2].lstrip().startswith("#")  # a comment line right above
                    fields[item.target.id] = trailing or above
    return found


def _sections(model: type[BaseModel], seen: dict[str, type[BaseModel]]) -> dict[str, type[BaseModel]]:
    seen[model.__name__] = model
    for field in model.model_fields.values():
        for kind in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(kind, type) and issubclass(kind, Section) and kind.__name__ not in seen:
                _sections(kind, seen)
    return seen


def undocumented() -> list[str]:
    source = documented_fields()
    missing = []
    for name, model in sorted(_sections(Recipe, {}).items()):
        for field, info in model.model_fields.items():
            if isinstance(info.annotation, type) and issubclass(info.annotation, Section):
                continue  # a section: its own fields are what is documented
            owner = next((base.__name__ for base in model.__mro__ if field in source.get(base.__name__, {})), None)
            if owner is None:
                if name == "Cluster" or model.__name__ == "_PerStage":  # made from the stage table, documented there
                    continue
                missing.append(f"{name}.{field} (not found in the source)")
            elif not source[owner][field]:
                missing.append(f"{owner}.{field}")
    return sorted(set(missing))


def test_every_field_of_every_section_is_documented():
    assert not undocumented(), f"recipe fields without a comment: {undocumented()}"
