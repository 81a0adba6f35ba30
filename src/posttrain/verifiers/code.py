"""Code verifier: run the program with its tests in a sandboxed subprocess; 1.0 when it exits cleanly.

The child gets an isolated interpreter (`python -I`), its own empty working directory, CPU-time, memory
and file-size limits, a wall-clock timeout that kills its whole process group, and, where the kernel
allows unprivileged user namespaces, no network (`unshare -rn`).
"""
from __future__ import annotations

import functools
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor


@functools.cache
def _no_network_prefix() -> tuple[str, ...]:
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode == 0:
        return (unshare, "-rn")
    return ()


def _limits(cpu_s: int, memory_mb: int) -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_program(program: str, timeout_s: float = 10.0, memory_mb: int = 1024) -> bool:
    """True when `program` exits with status 0 within the limits."""
    with tempfile.TemporaryDirectory(prefix="posttrain-sandbox-") as workdir:
        path = os.path.join(workdir, "program.py")
        with open(path, "w") as handle:
            handle.write(program)
        command = [*_no_network_prefix(), sys.executable, "-I", path]
        child = subprocess.Popen(command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True, env={"PATH": "/usr/bin:/bin"},
                                 preexec_fn=lambda: _limits(int(timeout_s) + 1, memory_mb))
        try:
            return child.wait(timeout=timeout_s) == 0
        except subprocess.TimeoutExpired:
            return False
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


def run_programs(programs: list[str], timeout_s: float = 10.0, memory_mb: int = 1024, workers: int = 4) -> list[bool]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda p: run_program(p, timeout_s, memory_mb), programs))


_BLOCK = re.compile(r"```(?:python|py)?\n(.*?)(?:```|$)", re.S)


def extract_code(completion: str) -> str:
    """The code of a chat answer: its first ```python block, or the whole answer."""
    match = _BLOCK.search(completion)
    return match.group(1) if match else completion


def code_reward(completions: list[str], ground_truth: list[str], **_: object) -> list[float]:
    """`ground_truth` holds each row's test code, run after the completion's code."""
    programs = [f"{extract_code(completion)}\n\n{tests}\n" for completion, tests in zip(completions, ground_truth, strict=True)]
    return [1.0 if ok else 0.0 for ok in run_programs(programs)]
