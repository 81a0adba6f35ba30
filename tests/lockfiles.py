"""Reading the resolver-made locks (images/gpu/requirements.lock, requirements/*.lock) and resolving them again.

A lock is `uv pip compile` output: its second line is the command that made it, with `--exclude-newer` (the
index as of the lock's date). Resolving again with that command and the lock itself as the output file is
uv's ordinary upgrade-nothing run: uv keeps every locked version that still satisfies the input and the
locked packages' own requirements, and changes whatever does not. So a re-resolution that keeps every pin
shows the lock is a resolution of its input; and it keeps them whatever the index gained since (a later
cut-off, or none), which a fresh resolution compared byte for byte does not (issue 27: CI went red by the
calendar).
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import ROOT

CUTOFFS = ("the lock's date", "no cut-off")  # the second: the index as it is today


def pins(text: str) -> dict[str, str]:
    return {canonicalize_name(m[1]): m[2] for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==(\S+)", text, re.M)}


def command(lock: Path) -> list[str]:
    """The `uv pip compile ...` line uv wrote at the top of the lock."""
    words = shlex.split(lock.read_text().splitlines()[1].lstrip("# "))
    assert words[:3] == ["uv", "pip", "compile"], f"{lock}: line 2 is not the uv command that made it"
    assert "--generate-hashes" in words and "--exclude-newer" in words, \
        f"{lock}: made without --generate-hashes or --exclude-newer (the date that makes it repeatable)"
    return words


def cutoff(lock: Path) -> str:
    words = command(lock)
    return words[words.index("--exclude-newer") + 1]


def _uv() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not Path(found).exists():
        pytest.fail("uv is missing: it is in the test extras (requirements/test.lock)")
    return found


def resolve_again(lock: Path, tmp_path: Path, later: bool) -> str:
    """The lock's own command run on a copy of the lock; `later`: without its cut-off date (today's index)."""
    words = command(lock)
    out = tmp_path / lock.name
    out.write_text(lock.read_text())
    words[words.index("-o") + 1] = str(out)
    if later:
        at = words.index("--exclude-newer")
        del words[at:at + 2]
    subprocess.run([_uv(), *words[1:], "-q"], check=True, cwd=ROOT, timeout=900)
    return out.read_text()


def unmet(requirement: Requirement, locked: dict[str, str]) -> str | None:
    """Why the locked pins do not satisfy `requirement` (None: they do)."""
    name = canonicalize_name(requirement.name)
    if name not in locked:
        return f"{requirement}: not in the lock"
    if not requirement.specifier.contains(locked[name], prereleases=True):
        return f"{requirement}: the lock has {locked[name]}"
    return None
