"""Where model-written code runs: a runner chosen from `recipe.sandbox`, failing closed.

- `recipe.sandbox.url` set: the code-execution service (`sandbox/service.py`, its own locked-down pod).
- else bubblewrap on this machine (`sandbox/local.py`), when `local.probe()` finds that it can box a program;
- else Landlock and a seccomp filter (`sandbox/local.py`), when `local.probe_landlock()` finds that they confine one;
- else, only with `recipe.sandbox.allow_unisolated: true`, rlimits and a timeout alone;
- else `SandboxUnavailable`, naming that field.

Every runner says which isolation it used (`runner.isolation`); the rlvr summary and eval scores carry it.
A stage selects the runner for its recipe with `sandbox.use(recipe.sandbox)` (tests: `with sandbox.configured(...)`);
code that runs outside a stage (scripts) gets the defaults of `SandboxSection`, which fail closed too.
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

from posttrain.recipe import SandboxSection
from posttrain.sandbox import local

OPTED_OUT = "none (opted out: recipe.sandbox.allow_unisolated)"
# The pod label of the stages that call the service; its NetworkPolicy admits only pods that carry it.
CLIENT_LABEL = ("posttrain/sandbox-client", "true")


class SandboxUnavailable(RuntimeError):
    """Model-written code would run without network and filesystem isolation; the message names the field."""


class LocalRunner:
    def __init__(self, section: SandboxSection, mode: str):
        """`mode`: one of `local.MODES`; the report names it ("bwrap", "landlock"), or the opt-out."""
        self.section, self.mode = section, mode
        self.isolation = OPTED_OUT if mode == "none" else mode
        self.limits = local.Limits(section.timeout_s, section.memory_mb, section.max_processes, section.max_file_mb)

    def run(self, programs: list[str], timeout_s: float | None = None) -> list[bool]:
        limits = self.limits if timeout_s is None else dataclasses.replace(self.limits, timeout_s=timeout_s)
        with ThreadPoolExecutor(self.section.concurrency) as pool:
            return list(pool.map(lambda p: local.run(p, limits, self.mode), programs))


def make_runner(section: SandboxSection):
    """The runner `section` asks for; raises `SandboxUnavailable` rather than run code unboxed unasked."""
    if section.url:
        from posttrain.sandbox.client import ServiceRunner

        return ServiceRunner(section)
    no_bwrap = local.probe()
    if no_bwrap is None:
        return LocalRunner(section, "bwrap")
    no_landlock = local.probe_landlock()
    if no_landlock is None:
        return LocalRunner(section, "landlock")
    problem = f"{no_bwrap}; and Landlock cannot stand in: {no_landlock}"
    if section.allow_unisolated:
        import warnings

        warnings.warn(f"running model-written code WITHOUT network or filesystem isolation ({problem}); "
                      "recipe.sandbox.allow_unisolated is true", stacklevel=2)
        return LocalRunner(section, "none")
    raise SandboxUnavailable(
        f"recipe.sandbox.allow_unisolated: false, and model-written code cannot be isolated here: {problem}. "
        "Install bubblewrap (apt-get install bubblewrap) or run on Linux 6.7 or later (Landlock ABI 4), name a "
        "code-execution service in recipe.sandbox.url, or set recipe.sandbox.allow_unisolated: true to run it "
        "with this user's network and files.")


_lock = threading.Lock()
_section: SandboxSection | None = None  # what the running stage configured; None: the recipe's defaults
_runners: dict[SandboxSection, object] = {}


def current():
    """The runner for the configured section (built on first use, so a run without code never needs a box)."""
    section = _section or SandboxSection()
    with _lock:
        if section not in _runners:
            _runners[section] = make_runner(section)
        return _runners[section]


def use(section: SandboxSection) -> None:
    """From now on code is verified as `section` says (a stage calls this first: one stage per process)."""
    global _section
    _section = section


@contextlib.contextmanager
def configured(section: SandboxSection) -> Iterator[None]:
    """Code verified inside this block runs as `section` says (a stage wraps its work in it)."""
    global _section
    previous, _section = _section, section
    try:
        yield
    finally:
        _section = previous


def isolation_used(section: SandboxSection) -> str | None:
    """The isolation the section's runner used, or None when no program ran under it."""
    runner = _runners.get(section)
    return runner.isolation if runner is not None else None
