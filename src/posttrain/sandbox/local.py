"""Run one untrusted Python program on this machine: boxed by bubblewrap; confined by Landlock and a seccomp
filter where bubblewrap is missing or cannot start (a laptop without it; the service in a pod that may not
create namespaces, see sandbox/service.py); or, opted out, with rlimits only.

The box (bubblewrap, see docs/ARCHITECTURE.md for why): fresh network, PID, IPC and UTS namespaces; a root
that holds only the interpreter's directories (read-only), a fresh /proc of the box's own PID namespace, a
minimal /dev, and a size-limited tmpfs as working directory and /tmp, so nothing the program writes reaches
this machine's disk. When we are root the program runs under an unprivileged user id of its own (one per
slot), so it cannot read root's files nor signal our processes, and RLIMIT_NPROC (which the kernel does not
enforce for root) bounds a fork bomb. rlimits: CPU time, address space, processes, file size, no core dumps.
A wall-clock timeout kills the whole process group; bwrap's PID namespace takes every descendant with it.

The Landlock box (no namespaces): the program runs in its own temporary directory on this machine's disk, the
only place it may write; it may read and execute only the interpreter's prefix and the system's libraries;
no TCP (Landlock), no socket at all, no io_uring, no leaving its process group (seccomp, sandbox/seccomp.py),
no signal or abstract socket beyond itself (Landlock ABI 6; seccomp refuses signals on older kernels); an
environment of PATH, HOME and TMPDIR only, no inherited file descriptor, no_new_privs; as root, an unprivileged
uid per slot as in bwrap. docs/ARCHITECTURE.md ("Model-written code") lists what it does not cover.
"""
from __future__ import annotations

import functools
import os
import queue
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from posttrain.sandbox import landlock, seccomp

BOX = "/box"  # the program's working directory inside the sandbox
_PATH = "/usr/bin:/bin"
# `python program.py` opens the file by its absolute path, through directories that may be closed to the box's
# uid (pytest's are 0700); this opens it relative to the working directory instead
_RUN_RELATIVE = ("exec(compile(open('program.py', 'rb').read(), 'program.py', 'exec'), "
                 "{'__name__': '__main__', '__file__': 'program.py', '__builtins__': __builtins__})")


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


def _others_can_reach(path: str) -> bool:
    """Whether a user with no relation to the owners may traverse to `path` and read it (mode bits only)."""
    try:
        if not os.stat(path).st_mode & stat.S_IROTH:
            return False
        return all(os.stat(parent).st_mode & stat.S_IXOTH for parent in Path(path).parents)
    except OSError:
        return False


@functools.cache
def _landlock_interpreter(as_other_user: bool) -> tuple[str, str] | None:
    """The interpreter a Landlock box runs and its prefix: ours, or, when the box runs as another user who
    cannot reach ours (pyenv under /root, mode 0700), the system's python of the same version; None if neither."""
    executable, prefix = _interpreter()
    if not as_other_user or (_others_can_reach(executable) and _others_can_reach(prefix)):
        return executable, prefix
    for directory in ("/usr/bin", "/usr/local/bin"):
        candidate = os.path.realpath(f"{directory}/python{sys.version_info.major}.{sys.version_info.minor}")
        if os.path.isfile(candidate) and _others_can_reach(candidate):
            return candidate, str(Path(candidate).parent.parent)
    return None


def _read_only_roots(prefix: str) -> list[str]:
    """What the interpreter needs to start, for a Landlock box: its prefix and the system's libraries."""
    return [prefix, "/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "/dev/urandom", "/dev/zero"]


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
    return command + _drop_to(uid) + [executable, "-I", f"{BOX}/program.py"]


def _drop_to(uid: int | None) -> list[str]:
    """The setpriv prefix that runs the rest of a command as `uid` with no capabilities ([] for None)."""
    if uid is None:
        return []
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs"]


@functools.cache
def probe() -> str | None:
    """None when bubblewrap boxes a program here (no network interface up, no file outside the box), else why not."""
    if not shutil.which("bwrap"):
        return "bubblewrap (bwrap) is not installed (apt-get install bubblewrap)"
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
    """None when Landlock (ABI >= 4: files and TCP) and the seccomp filter confine a program here, else why not."""
    if landlock.abi() < 4:
        return (f"the kernel's Landlock ABI is {landlock.abi()} (Linux 6.7 or later has ABI 4, which confines "
                "TCP too)")
    if not seccomp.available():
        return "no seccomp filter for this architecture"
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        return "setpriv (util-linux) is not installed"
    if _landlock_interpreter(os.geteuid() == 0) is None:
        return (f"as root the program runs under an unprivileged uid, which cannot reach {_interpreter()[0]} "
                f"(a directory above it is not searchable by others), and there is no system "
                f"python{sys.version_info.major}.{sys.version_info.minor}")
    check = ("import socket\ntry:\n    open('/etc/hostname')\nexcept PermissionError:\n    pass\n"
             "else:\n    raise SystemExit('read outside the box')\n"
             "for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):\n"
             "    try:\n        socket.socket(socket.AF_INET, kind)\n    except PermissionError:\n        pass\n"
             "    else:\n        raise SystemExit('opened a socket')\n")
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
        env, prefix = {"PATH": _PATH}, ""
        if mode == "bwrap":
            command, cwd = bwrap_command(path, limits, uid), "/"
        elif mode == "landlock":
            found = _landlock_interpreter(uid is not None)
            if found is None:
                raise OSError(probe_landlock())
            executable, prefix = found
            command, cwd = _drop_to(uid) + [executable, "-I", "-c", _RUN_RELATIVE], host_dir
            env.update(HOME=host_dir, TMPDIR=host_dir)
            if uid is not None:
                os.chown(host_dir, uid, uid)
                os.chmod(host_dir, 0o700)
        else:
            command, cwd = [_interpreter()[0], "-I", path], host_dir
        # as root the program's own uid counts only its processes; otherwise the limit counts all of ours
        nproc = limits.max_processes if uid is not None or os.geteuid() == 0 else \
            _own_process_count() + limits.max_processes

        def prepare() -> None:  # in the child, after setsid, before exec
            _set_limits(limits, nproc)
            if mode == "landlock":
                landlock.restrict(read_only=_read_only_roots(prefix), read_write=[host_dir, "/dev/null"])
                seccomp.deny(seccomp.ALWAYS + (seccomp.SIGNALS if landlock.abi() < 6 else ()))

        output = subprocess.PIPE if capture else subprocess.DEVNULL
        child = subprocess.Popen(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                                 start_new_session=True, close_fds=True, env=env, preexec_fn=prepare)
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


MODES = ("bwrap", "landlock", "none")  # landlock: no bubblewrap here (files, sockets, signals); none: opted out


def run(program: str, limits: Limits, mode: str = "bwrap") -> bool:
    """True when `program` exits 0 within the limits, boxed as `mode` says (see MODES)."""
    return run_detailed(program, limits, mode, capture=False)[0]


def run_detailed(program: str, limits: Limits, mode: str = "bwrap", capture: bool = True) -> tuple[bool, str]:
    """`run`, and the program's output (or "timeout") when `capture`."""
    if mode not in MODES:
        raise ValueError(f"sandbox mode {mode!r}; one of {MODES}")
    if mode == "none" or os.geteuid() != 0:
        return _run(program, limits, mode, capture=capture)
    uid = _slots().get()
    try:
        return _run(program, limits, mode, uid=uid, capture=capture)
    finally:
        _slots().put(uid)
