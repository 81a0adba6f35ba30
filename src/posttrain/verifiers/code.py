"""Code verifier: run the program with its tests in the sandbox; 1.0 when it exits cleanly.

Where and how programs run is `posttrain.sandbox`'s business (chosen by `recipe.sandbox`, failing closed):
bubblewrap on this machine (no network, only its own working directory and the interpreter, read-only,
rlimits, a timeout that kills the whole process tree), or the code-execution service on a cluster.
"""
from __future__ import annotations

import re

from posttrain import sandbox


def run_programs(programs: list[str], timeout_s: float | None = None) -> list[bool]:
    """For each program, True when it exits with status 0 within the limits (`recipe.sandbox`, concurrently)."""
    return sandbox.current().run(programs, timeout_s)


def run_program(program: str, timeout_s: float | None = None) -> bool:
    """True when `program` exits with status 0 within the limits."""
    return run_programs([program], timeout_s)[0]


_BLOCK = re.compile(r"```(?:python|py)?\n(.*?)(?:```|$)", re.S)


def extract_code(completion: str) -> str:
    """The code of a chat answer: its first ```python block, or the whole answer."""
    match = _BLOCK.search(completion)
    return match.group(1) if match else completion


def code_reward(completions: list[str], ground_truth: list[str], **_: object) -> list[float]:
    """`ground_truth` holds each row's test code, run after the completion's code."""
    programs = [f"{extract_code(completion)}\n\n{tests}\n" for completion, tests in zip(completions, ground_truth, strict=True)]
    return [1.0 if ok else 0.0 for ok in run_programs(programs)]
