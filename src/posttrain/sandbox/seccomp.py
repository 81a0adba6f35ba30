"""A seccomp filter for a program confined by Landlock without namespaces: what Landlock leaves open.

Landlock (sandbox/landlock.py) rules files, TCP bind/connect and (ABI 6) signals. It does not rule UDP, raw,
netlink or UNIX sockets (a program could reach a DNS server, or connect to a socket file it can name), nor
io_uring (whose socket operations skip the socket system call), nor leaving the process group that the
timeout kills. This filter makes those system calls fail with EACCES, in the child before exec:
`socket` (every family: a verifier's program needs none; `socketpair` stays), `io_uring_setup`, `setsid`
and `setpgid` (so `killpg` takes every descendant), `ptrace` and `process_vm_readv/writev`, System V IPC
(shared memory, queues, semaphores of this machine's other processes) and the kernel keyrings; and, when
Landlock is older than ABI 6 and cannot scope signals, every call that signals another process.
Requires no_new_privs (landlock.restrict sets it first). Architectures other than the running one are killed,
and on x86_64 the x32 numbers too, so no alternate numbering bypasses the list.
"""
from __future__ import annotations

import ctypes
import errno
import platform

_SET_SECCOMP, _MODE_FILTER = 22, 2  # prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program)
_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06  # classic BPF opcodes
_ALLOW, _KILL_PROCESS, _ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_X32_BIT = 0x40000000

# architecture -> (AUDIT_ARCH_*, system call numbers)
_ARCH = {
    "x86_64": (0xC000003E, {"socket": 41, "io_uring_setup": 425, "setsid": 112, "setpgid": 109, "ptrace": 101,
                            "process_vm_readv": 310, "process_vm_writev": 311, "kill": 62, "tkill": 200,
                            "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297,
                            "pidfd_send_signal": 424, "shmget": 29, "shmat": 30, "shmctl": 31, "semget": 64,
                            "semop": 65, "semctl": 66, "semtimedop": 220, "msgget": 68, "msgsnd": 69, "msgrcv": 70,
                            "msgctl": 71, "add_key": 248, "request_key": 249, "keyctl": 250}),
    "aarch64": (0xC00000B7, {"socket": 198, "io_uring_setup": 425, "setsid": 157, "setpgid": 154, "ptrace": 117,
                             "process_vm_readv": 270, "process_vm_writev": 271, "kill": 129, "tkill": 130,
                             "tgkill": 131, "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240,
                             "pidfd_send_signal": 424, "shmget": 194, "shmat": 196, "shmctl": 195,
                             "semget": 190, "semop": 193, "semctl": 191, "semtimedop": 192, "msgget": 186,
                             "msgsnd": 189, "msgrcv": 188, "msgctl": 187, "add_key": 217, "request_key": 218,
                             "keyctl": 219}),
}
ALWAYS = ("socket", "io_uring_setup", "setsid", "setpgid", "ptrace", "process_vm_readv", "process_vm_writev",
          "shmget", "shmat", "shmctl", "semget", "semop", "semctl", "semtimedop", "msgget", "msgsnd", "msgrcv",
          "msgctl", "add_key", "request_key", "keyctl")
SIGNALS = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_send_signal")


class _Instruction(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Instruction))]


def available() -> bool:
    return platform.system() == "Linux" and platform.machine() in _ARCH


def deny(names: tuple[str, ...]) -> None:
    """Install the filter on this process (and its future children): `names` fail with EACCES."""
    audit_arch, numbers = _ARCH[platform.machine()]
    code = [(_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
            (_JEQ_K, 1, 0, audit_arch), (_RET_K, 0, 0, _KILL_PROCESS),
            (_LD_W_ABS, 0, 0, 0)]  # seccomp_data.nr
    if platform.machine() == "x86_64":
        code += [(_JGE_K, 0, 1, _X32_BIT), (_RET_K, 0, 0, _KILL_PROCESS)]
    for name in names:  # if nr == this one: the next instruction (refuse), else skip it
        code += [(_JEQ_K, 0, 1, numbers[name]), (_RET_K, 0, 0, _ERRNO | errno.EACCES)]
    code.append((_RET_K, 0, 0, _ALLOW))
    instructions = (_Instruction * len(code))(*(_Instruction(*i) for i in code))
    program = _Program(len(code), instructions)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_SET_SECCOMP, _MODE_FILTER, ctypes.byref(program), 0, 0) < 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")
