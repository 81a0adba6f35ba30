"""Run one untrusted Python program on this machine: boxed by bubblewrap; confined by Landlock (the service
in a pod that may not create namespaces, see sandbox/service.py); or, opted out, with rlimits only.

The box (bubblewrap, see docs/ARCHITECTURE.md for why): fresh network, PID, IPC and UTS namespaces; a root
that holds only the interpreter's directories (read-only), a fresh /proc of the box's own PID namespace, a
minimal /dev, and a size-limited tmpfs as working directory and /tmp, so nothing the program writes reaches
this machine's disk. When we are root the program runs under an unprivileged user id of its own (one per
slot), so it cannot read root's files nor signal our processes, and RLIMIT_NPROC (which the kernel does not
enforce for root) bounds a fork bomb. rlimits: CPU time, address space, processes, file size, no core dumps.
A wall-clock timeout kills the whole process group; bwrap's PID namespace takes every descendant with it.
"""
from __future__ import annotations

import functools
import os
import queue
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from posttrain.sandbox import landlock

BOX = "/box"  # the program's working directory inside the sandbox
_PATH = "/usr/bin:/bin"


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    memory_mb: int
    max_processes: int
    max_file_mb: int


def _interpreter() -> tuple[str, str]:
    """The base interpreter (not the venv: the box gets the standard library only) and its prefix."""
    executable = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    return executable, os.path.realpath(sys.base_prefix)


def _own_process_count() -> int:
    uid = os.getuid()
    return sum(1 for entry in Path("/proc").iterdir() if entry.name.isdigit() and _owner(entry) == uid)


def _owner(entry: Path) -> int | None:
    try:
        return entry.stat().st_uid
    except OSError:
        return None


def _read_only_roots() -> list[str]:
    """What the interpreter needs to start, for a Landlock box: its prefix and the system's libraries."""
    return [_interpreter()[1], "/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache"]


def _set_limits(limits: Limits, nproc: int) -> None:
    cpu = int(limits.timeout_s) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb << 20, limits.memory_mb << 20))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.max_file_mb << 20, limits.max_file_mb << 20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))


def bwrap_command(program_path: str, limits: Limits, uid: int | None) -> list[str]:
    """The bubblewrap command line running `program_path` as /box/program.py; `uid`: drop to it (we are root)."""
    executable, prefix = _interpreter()
    tmpfs_bytes = str(4 * (limits.max_file_mb << 20))
    command = ["bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
               "--die-with-parent", "--new-session", "--clearenv", "--setenv", "PATH", _PATH,
               "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "lib", "lib32", "lib64", "sbin"):  # merged-/usr symlinks, or the real directories
        path = Path("/") / name
        if path.is_symlink():
            command += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            command += ["--ro-bind", str(path), str(path)]
    if not prefix.startswith("/usr/"):
        # bwrap copies the modes of the directories above a bind (/root is 0700): open them for the box's user
        for parent in reversed(Path(prefix).parents[:-1]):
            command += ["--perms", "0755", "--dir", str(parent)]
        command += ["--ro-bind", prefix, prefix]
    command += ["--proc", "/proc", "--dev", "/dev",
                "--perms", "1777", "--size", tmpfs_bytes, "--tmpfs", "/tmp",
                "--perms", "1777", "--size", tmpfs_bytes, "--tmpfs", BOX,
                "--ro-bind", program_path, f"{BOX}/program.py", "--chdir", BOX, "--"]
    if uid is not None:
        command += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
                    "--bounding-set=-all", "--no-new-privs"]
    return command + [executable, "-I", f"{BOX}/program.py"]


@functools.cache
def probe() -> str | None:
    """None when bubblewrap boxes a program here (no network interface up, no file outside the box), else why not."""
    if not shutil.which("bwrap"):
        return "bubblewrap (bwrap) is not installed"
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        return "setpriv (util-linux) is not installed"
    check = ("import os, socket\n"
             "assert [n for _, n in socket.if_nameindex()] == ['lo'], socket.if_nameindex()\n"
             "assert sorted(os.listdir('.')) == ['program.py'], os.listdir('.')\n"
             "assert not os.path.exists('/etc/passwd')\n")
    try:
        passed, detail = run_detailed(check, Limits(20.0, 1024, 32, 16), "bwrap")
    except OSError as exc:
        return f"bwrap cannot start: {exc}"
    return None if passed else f"bwrap cannot start a box here: {detail.strip()[-300:]}"


@functools.cache
def probe_landlock() -> str | None:
    """None when Landlock (ABI >= 4: files and TCP) confines a program here, else why not."""
    if landlock.abi() < 4:
        return f"Landlock ABI {landlock.abi()} (4 or later confines TCP too)"
    check = ("import socket\ntry:\n    open('/etc/hostname')\nexcept PermissionError:\n    pass\n"
             "else:\n    raise SystemExit('read outside the box')\n"
             "try:\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\nexcept PermissionError:\n    pass\n"
             "else:\n    raise SystemExit('connected')\n")
    try:
        passed, detail = run_detailed(check, Limits(20.0, 1024, 32, 16), "landlock")
    except (OSError, subprocess.SubprocessError) as exc:
        return f"Landlock cannot start: {exc}"
    return None if passed else f"Landlock does not confine a program here: {detail.strip()[-300:]}"


@functools.cache
def _slots() -> "queue.Queue[int]":
    """Unprivileged user ids for boxes started by root: one per program in flight, distinct per process."""
    slots: queue.Queue[int] = queue.Queue()
    base = 200_000 + (os.getpid() % 4096) * 64
    for uid in range(base, base + 64):
        slots.put(uid)
    return slots


def _run(program: str, limits: Limits, mode: str, uid: int | None = None,
         capture: bool = False) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory(prefix="posttrain-sandbox-") as host_dir:
        path = os.path.join(host_dir, "program.py")
        with open(path, "w") as handle:
            handle.write(program)
        os.chmod(host_dir, 0o755)
        os.chmod(path, 0o644)
        if mode == "bwrap":
            command, cwd = bwrap_command(path, limits, uid), "/"
            # as root the program's own uid counts only its processes; otherwise the limit counts all of ours
            nproc = limits.max_processes if uid is not None else _own_process_count() + limits.max_processes
        else:
            command, cwd = [_interpreter()[0], "-I", path], host_dir
            nproc = _own_process_count() + limits.max_processes if os.geteuid() else limits.max_processes

        def prepare() -> None:  # in the child, before exec
            _set_limits(limits, nproc)
            if mode == "landlock":
                landlock.restrict(read_only=_read_only_roots(), read_write=[host_dir])

        output = subprocess.PIPE if capture else subprocess.DEVNULL
        child = subprocess.Popen(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                                 start_new_session=True, env={"PATH": _PATH}, preexec_fn=prepare)
        try:
            out, err = child.communicate(timeout=limits.timeout_s)
            return child.returncode == 0, (out or b"").decode(errors="replace") + (err or b"").decode(errors="replace")
        except subprocess.TimeoutExpired:
            return False, "timeout"
        finally:
            try:  # always: a program may leave background processes in its group even when it exits 0
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.wait()


MODES = ("bwrap", "landlock", "none")  # landlock: the service in a pod (files, TCP, signals); none: opted out


def run(program: str, limits: Limits, mode: str = "bwrap") -> bool:
    """True when `program` exits 0 within the limits, boxed as `mode` says (see MODES)."""
    return run_detailed(program, limits, mode, capture=False)[0]


def run_detailed(program: str, limits: Limits, mode: str = "bwrap", capture: bool = True) -> tuple[bool, str]:
    """`run`, and the program's output (or "timeout") when `capture`."""
    if mode not in MODES:
        raise ValueError(f"sandbox mode {mode!r}; one of {MODES}")
    if mode != "bwrap" or os.geteuid() != 0:
        return _run(program, limits, mode, capture=capture)
    uid = _slots().get()
    try:
        return _run(program, limits, mode, uid=uid, capture=capture)
    finally:
        _slots().put(uid)
