"""Tülu's row formats, checked: every problem is reported as `file line N: field: what is wrong`.

- sft: `{"messages": [{"role", "content"}, ...]}` ending with an assistant turn
- preference: `{"prompt": str, "chosen": [...], "rejected": [...]}`, both conversations ending with the
  assistant's answer
- rlvr: `{"messages": [...], "ground_truth": str, "dataset": <a verifier name>}`
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

Kind = Literal["sft", "preference", "rlvr"]
# The data stage's artifact: split -> file name. Every stage that reads the data artifact finds its split here.
FILES = {"sft": "sft.jsonl", "preference": "preference.jsonl", "rlvr": "rlvr.jsonl", "heldout": "heldout.jsonl",
         "heldout_ifeval": "heldout_ifeval.jsonl",
         "preference_pairs": "preference_pairs.jsonl"}
ROLES = {"system", "user", "assistant"}


from posttrain.store import RowError, iter_jsonl

__all__ = ["FILES", "RowError", "problems", "read_rows"]


def _messages(value, field: str, last_role: str | None) -> list[str]:
    if not isinstance(value, list) or not value:
        return [f"{field}: must be a non-empty list of messages"]
    problems = []
    for i, message in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(message, dict):
            problems.append(f"{where}: must be an object with role and content")
            continue
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or role not in ROLES:
            problems.append(f"{where}.role: must be one of {sorted(ROLES)}, got {role!r}")
        if not isinstance(content, str) or not content.strip():
            problems.append(f"{where}.content: must be non-empty text")
    if not problems and last_role and value[-1].get("role") != last_role:
        problems.append(f"{field}: last message must be from the {last_role}, got {value[-1].get('role')!r}")
    return problems


def problems(row, kind: Kind) -> list[str]:
    """Everything wrong with `row` as a `kind` row (empty when it is valid)."""
    if not isinstance(row, dict):
        return [f"row: must be an object, got {type(row).__name__}"]
    if kind == "sft":
        return _messages(row.get("messages"), "messages", "assistant")
    if kind == "preference":
        prompt = row.get("prompt")
        found = [] if isinstance(prompt, str) and prompt.strip() else ["prompt: must be non-empty text"]
        return found + _messages(row.get("chosen"), "chosen", "assistant") + \
            _messages(row.get("rejected"), "rejected", "assistant")
    from posttrain.verifiers import VERIFIERS

    found = _messages(row.get("messages"), "messages", "user")
    if not isinstance(row.get("ground_truth"), str) or not row["ground_truth"].strip():
        found.append("ground_truth: must be non-empty text")
    if not isinstance(row.get("dataset"), str) or row["dataset"] not in VERIFIERS:
        found.append(f"dataset: must name a verifier ({', '.join(sorted(VERIFIERS))}), got {row.get('dataset')!r}")
    return found


def read_rows(path: str | Path, kind: Kind) -> list[dict]:
    """Rows of a JSONL file, each checked against `kind`; the first bad one raises RowError."""
    rows = []
    for number, row in iter_jsonl(path):
        found = problems(row, kind)
        if found:
            raise RowError(f"{path} line {number}: " + "; ".join(found))
        rows.append(row)
    return rows
