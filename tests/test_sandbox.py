"""Untrusted code stays in its box: hostile programs through the verifier's public entry point (`verify`),
in bubblewrap on this machine, under Landlock and seccomp where bubblewrap is missing, and through the
code-execution service on loopback. Each program exits 0
only when its attack worked, so a score of 1 is an escape; afterwards nothing may be left behind."""
import functools
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from posttrain import sandbox
from posttrain.recipe import SandboxSection
from posttrain.sandbox import landlock, local, service
from posttrain.verifiers import verify

pytestmark = pytest.mark.slow  # a module of a minute or more: handed out first (conftest.py)

TIMEOUT_S = 3.0
TOKEN = secrets.token_hex(16)


def _box_processes() -> list[str]:
    """Processes of any box (bwrap, or an interpreter running a box's program)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if entry.name.isdigit() and (argv[0].endswith(b"bwrap") or any(b"/box/program.py" in a for a in argv)
                                     or any(b"posttrain-sandbox-" in a for a in argv)):
            found.append(b" ".join(argv).decode(errors="replace"))
    return found


@pytest.fixture
def listener():
    """A TCP listener on loopback that records every connection it accepts."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def accept():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1], accepted
    server.close()


@pytest.fixture
def udp_echo():
    """A UDP socket on loopback that answers every datagram it receives (so a program knows it got through)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    received = []

    def echo():
        while True:
            try:
                data, peer = server.recvfrom(64)
            except OSError:
                return
            received.append(data)
            server.sendto(data, peer)

    threading.Thread(target=echo, daemon=True).start()
    yield server.getsockname()[1], received
    server.close()


@pytest.fixture
def victim():
    """Another process of this user with the secret in its environment (what /proc/<pid>/environ shows)."""
    process = subprocess.Popen(["sleep", "120"], env={"POSTTRAIN_HOSTILE_SECRET": TOKEN})
    yield process.pid
    process.kill()
    process.wait()


def hide_bwrap(monkeypatch) -> None:
    """This machine as one without bubblewrap: `shutil.which("bwrap")`, which the probe asks, finds nothing."""
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "bwrap" else which(name, *a, **k))
    monkeypatch.setattr(local, "probe", functools.cache(local.probe.__wrapped__))  # undone: the cached real one


@pytest.fixture(params=["bwrap", "landlock", "service", "service-in-pod"])
def where(request, monkeypatch):
    """The verifier configured for bubblewrap here, for Landlock here when bubblewrap is missing, for the
    service on 127.0.0.1, or for the service as it runs in a pod whose seccomp profile refuses namespaces
    (Landlock per program); yields (mode, server)."""
    monkeypatch.setattr(sandbox, "_runners", {})
    if request.param in ("bwrap", "landlock"):
        if request.param == "landlock":
            hide_bwrap(monkeypatch)
            if local.probe_landlock():
                pytest.skip(f"needs a kernel with Landlock ABI 4 (Linux 6.7): {local.probe_landlock()}")
        section = SandboxSection(timeout_s=TIMEOUT_S)
        server = None
    else:
        limits = local.Limits(TIMEOUT_S, 1024, 32, 16)
        if request.param == "service-in-pod":
            if local.probe_landlock():
                pytest.skip(f"needs a kernel with Landlock ABI 4 (Linux 6.7): {local.probe_landlock()}")
            monkeypatch.setattr(local, "probe", lambda: "simulated: seccomp refuses user namespaces")
        server = service.serve("127.0.0.1", 0, limits, workers=4, allow_pod_isolation=request.param == "service-in-pod")
        section = SandboxSection(url=f"http://127.0.0.1:{server.server_address[1]}", timeout_s=TIMEOUT_S, retries=0)
    with sandbox.configured(section):
        yield request.param, server
    if server is not None:
        server.shutdown()
        server.server_close()


def hostile_programs(secret: Path, token: Path, port: int, outside: Path, udp_port: int) -> dict[str, str]:
    paths = [str(token), "/var/run/secrets/kubernetes.io/serviceaccount/token"]
    return {
        "read a secret outside the box": f"assert {TOKEN!r} in open({str(secret)!r}).read()",
        "read a service-account token": "import sys\nfor p in %r:\n    try:\n        open(p).read(); sys.exit(0)\n"
                                        "    except OSError:\n        pass\nsys.exit(1)" % paths,
        "read another process's environment": (
            "import os, sys\nfor p in ['/proc/%d/environ' % os.getppid(), '/proc/1/environ'] + "
            "['/proc/%s/environ' % d for d in os.listdir('/proc') if d.isdigit()]:\n"
            f"    try:\n        if {TOKEN!r}.encode() in open(p, 'rb').read(): sys.exit(0)\n"
            "    except OSError:\n        pass\nsys.exit(1)"),
        "open a socket to a loopback listener": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)",
        # UDP, which Landlock does not rule: succeeded when the loopback echo answered
        "exchange UDP datagrams with a loopback socket": (
            f"import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(2)\n"
            f"s.sendto(b'out', ('127.0.0.1', {udp_port}))\nassert s.recvfrom(64)[0] == b'out'"),
        "fork bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        "allocate 4 GB": "x = bytearray(4 << 30)\nx[::4096] = b'1' * len(x[::4096])",
        "write 100 MB": "with open('big', 'wb') as f:\n    for _ in range(100):\n        f.write(b'0' * (1 << 20))",
        "write outside the box": (f"import sys\nfor p in [{str(outside)!r}, '/usr/escaped', {str(secret)!r}]:\n"
                                  "    try:\n        open(p, 'a').write('x'); sys.exit(0)\n"
                                  "    except OSError:\n        pass\nsys.exit(1)"),
        "sleep past the timeout": "import time\ntime.sleep(60)",
        # succeeded when the parent is gone (this program reparented); a kill the kernel ignores is no success
        "signal the parent": ("import os, signal, time\nparent = os.getppid()\nfor pid in (parent, 1):\n"
                              "    try:\n        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\n"
                              "time.sleep(0.5)\nassert os.getppid() != parent"),
    }


def test_hostile_programs_score_zero_and_leave_nothing_behind(where, tmp_path, listener, udp_echo, victim,
                                                              monkeypatch):
    mode, server = where
    secret = tmp_path / "secret.txt"
    secret.write_text(TOKEN)
    token = tmp_path / "var/run/secrets/kubernetes.io/serviceaccount/token"
    token.parent.mkdir(parents=True)
    token.write_text(TOKEN)
    outside = tmp_path / "escaped.txt"
    port, accepted = listener
    host_tmp = tmp_path / "host-tmp"  # where the verifier keeps each program's file on this machine
    host_tmp.mkdir()
    planted = sorted(tmp_path.rglob("*"))
    monkeypatch.setattr(tempfile, "tempdir", str(host_tmp))
    programs = hostile_programs(secret, token, port, outside, udp_echo[0])

    # the same programs, run plainly, do what they claim (so a 0 in the box means the box stopped them)
    plain = subprocess.run([sys.executable, "-c", programs["read a secret outside the box"]], timeout=10)
    assert plain.returncode == 0

    start = time.monotonic()
    scores = dict(zip(programs, verify(list(programs.values()), dataset=["code"] * len(programs),
                                       ground_truth=[""] * len(programs))))
    elapsed = time.monotonic() - start
    assert scores == {name: 0.0 for name in programs}, f"escaped ({mode}): {[n for n, s in scores.items() if s]}"
    assert elapsed < 4 * TIMEOUT_S + 10  # 11 programs, 4 at a time: the timeout bounds every one

    assert not accepted, "the program reached the loopback listener"
    assert not udp_echo[1], "a datagram reached the loopback UDP socket"
    assert sorted(tmp_path.rglob("*")) == planted and secret.read_text() == TOKEN and not outside.exists()
    assert not Path("/usr/escaped").exists()
    assert list(host_tmp.iterdir()) == []
    deadline = time.monotonic() + 5
    while _box_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _box_processes() == []

    # the parent survived being signalled, and the box still works
    assert verify(["def f(x):\n    return 2 * x"], dataset=["code"], ground_truth=["assert f(3) == 6"]) == [1.0]
    assert sandbox.current().isolation == {"bwrap": "bwrap", "landlock": "landlock", "service": "service (bwrap)",
                                           "service-in-pod": "service (pod+landlock)"}[mode]


CONTROLS = ["read a secret outside the box", "read a service-account token", "read another process's environment",
            "open a socket to a loopback listener", "exchange UDP datagrams with a loopback socket",
            "write outside the box"]


def test_control_the_same_attacks_succeed_without_the_box(tmp_path, listener, udp_echo, victim, monkeypatch):
    """The attacks are real: unboxed (the opt-out) they score 1. (The fork bomb, 4 GB, 100 MB and signal ones
    are left out: unboxed they would hit this shared machine and this test process.)"""
    monkeypatch.setattr(sandbox, "_runners", {})
    monkeypatch.setattr(local, "probe", lambda: "control run")
    monkeypatch.setattr(local, "probe_landlock", lambda: "control run")
    secret, token, outside = tmp_path / "secret.txt", tmp_path / "token", tmp_path / "escaped.txt"
    secret.write_text(TOKEN)
    token.write_text(TOKEN)
    port, accepted = listener
    programs = hostile_programs(secret, token, port, outside, udp_echo[0])
    with sandbox.configured(SandboxSection(allow_unisolated=True, timeout_s=TIMEOUT_S)), pytest.warns(UserWarning):
        scores = verify([programs[name] for name in CONTROLS], dataset=["code"] * len(CONTROLS),
                        ground_truth=[""] * len(CONTROLS))
    assert scores == [1.0] * len(CONTROLS)
    assert outside.exists() and accepted and udp_echo[1]


def test_humaneval_canonical_solutions_score_one_through_the_service(where):
    from posttrain.evals import humaneval

    rows = humaneval.rows()
    answers = [f"```python\n{r['problem']['prompt']}{r['problem']['canonical_solution']}```" for r in rows]
    start = time.monotonic()
    outcomes = humaneval.score(rows, answers)
    assert outcomes == [1.0] * 164, [r["problem"]["task_id"] for r, o in zip(rows, outcomes) if not o]
    print(f"humaneval canonical ({where[0]}): 164/164 in {time.monotonic() - start:.1f}s")


def test_without_bwrap_or_landlock_the_verifier_refuses_naming_the_field_and_what_to_install(monkeypatch):
    hide_bwrap(monkeypatch)
    monkeypatch.setattr(landlock, "abi", lambda: 3)  # a kernel older than 6.7
    monkeypatch.setattr(local, "probe_landlock", functools.cache(local.probe_landlock.__wrapped__))
    monkeypatch.setattr(sandbox, "_runners", {})
    with sandbox.configured(SandboxSection()):
        with pytest.raises(sandbox.SandboxUnavailable) as refused:
            verify(["x = 1"], dataset=["code"], ground_truth=[""])
    message = str(refused.value)
    for named in ("recipe.sandbox.allow_unisolated", "bubblewrap (bwrap) is not installed",
                  "apt-get install bubblewrap", "Landlock ABI is 3", "Linux 6.7"):
        assert named in message, message
    with pytest.raises(SystemExit, match="refusing"):
        service.serve("127.0.0.1", 0, local.Limits(1, 256, 8, 1), workers=1)


def test_the_opt_out_runs_unboxed_and_says_so(monkeypatch):
    monkeypatch.setattr(local, "probe", lambda: "simulated: bubblewrap cannot start")
    monkeypatch.setattr(local, "probe_landlock", lambda: "simulated: Landlock ABI 0")
    monkeypatch.setattr(sandbox, "_runners", {})
    section = SandboxSection(allow_unisolated=True, timeout_s=5.0)
    with sandbox.configured(section), pytest.warns(UserWarning, match="WITHOUT network or filesystem isolation"):
        assert verify(["def f():\n    return 1"], dataset=["code"], ground_truth=["assert f() == 1"]) == [1.0]
    assert sandbox.isolation_used(section) == sandbox.OPTED_OUT


def test_a_pod_without_namespaces_or_landlock_serves_when_allowed_and_the_client_records_it(monkeypatch):
    monkeypatch.setattr(local, "probe", lambda: "simulated: seccomp refuses user namespaces")
    monkeypatch.setattr(local, "probe_landlock", lambda: "simulated: Landlock ABI 0")
    monkeypatch.setattr(sandbox, "_runners", {})
    server = service.serve("127.0.0.1", 0, local.Limits(5, 1024, 32, 16), workers=2, allow_pod_isolation=True)
    try:
        section = SandboxSection(url=f"http://127.0.0.1:{server.server_address[1]}")
        with sandbox.configured(section):
            assert verify(["x = 1", "x = 1/0"], dataset=["code"] * 2, ground_truth=["", ""]) == [1.0, 0.0]
        assert sandbox.isolation_used(section) == "service (pod)"
    finally:
        server.shutdown()
        server.server_close()


def test_the_client_retries_then_names_the_url(monkeypatch):
    from posttrain.sandbox.client import ServiceRunner, SandboxServiceError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    start = time.monotonic()
    with pytest.raises(SandboxServiceError, match=rf"recipe\.sandbox\.url http://127.0.0.1:{port}/healthz.*3 attempts"):
        ServiceRunner(SandboxSection(url=f"http://127.0.0.1:{port}", retries=2), backoff_s=0.05)
    assert time.monotonic() - start >= 0.15  # 0.05 + 0.1 of backoff


def test_the_service_rejects_malformed_requests_and_caps_the_timeout():
    import json
    import urllib.error
    import urllib.request

    server = service.serve("127.0.0.1", 0, local.Limits(2, 1024, 32, 16), workers=1)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(urllib.error.HTTPError) as bad:
            urllib.request.urlopen(urllib.request.Request(url + "/run", data=b'{"tests": "x"}'))
        assert bad.value.code == 400
        start = time.monotonic()
        answer = json.loads(urllib.request.urlopen(urllib.request.Request(
            url + "/run", data=json.dumps({"code": "import time; time.sleep(30)", "timeout_s": 600}).encode())).read())
        assert answer["passed"] is False and time.monotonic() - start < 10
    finally:
        server.shutdown()
        server.server_close()


def test_without_bwrap_the_stages_box_code_with_landlock_and_the_gate_report_says_so(tmp_path, micro_recipe,
                                                                                   monkeypatch):
    """The README demo's path on a laptop without bubblewrap: data (its code rows run), eval on HumanEval, gate."""
    from posttrain.stages import base, data, eval as eval_stage, promote

    hide_bwrap(monkeypatch)
    if local.probe_landlock():
        pytest.skip(f"needs a kernel with Landlock ABI 4 (Linux 6.7): {local.probe_landlock()}")
    monkeypatch.setattr(sandbox, "_runners", {})
    monkeypatch.setattr(sandbox, "_section", None)
    recipe = micro_recipe.override(eval={"benchmarks": ["humaneval"], "max_new_tokens_for": {}},
                                   promote={"min_accuracy": {}, "registry": f"file://{tmp_path}/registry"})
    data.run(recipe, tmp_path / "data")
    base.run(recipe, tmp_path / "data", tmp_path / "base")
    scores = eval_stage.run(recipe, tmp_path / "data", {"base": tmp_path / "base"}, tmp_path / "eval")
    assert scores["sandbox"] == "landlock"
    report = promote.decide(recipe, tmp_path / "eval", tmp_path / "gate")
    assert report["sandbox"] == "landlock"
    assert "ran in: **landlock**" in (tmp_path / "gate" / "report.md").read_text()
    assert "<b>landlock</b>" in (tmp_path / "gate" / "report.html").read_text()


def test_an_opted_out_run_says_so_in_the_eval_scores_and_the_gate_report(tmp_path, micro_recipe, monkeypatch):
    """Through the stages: data (its code rows are run), base, eval on HumanEval, gate report."""
    from posttrain.stages import base, data, eval as eval_stage, promote

    monkeypatch.setattr(local, "probe", lambda: "simulated: bubblewrap cannot start")
    monkeypatch.setattr(local, "probe_landlock", lambda: "simulated: Landlock ABI 0")
    monkeypatch.setattr(sandbox, "_runners", {})
    monkeypatch.setattr(sandbox, "_section", None)
    recipe = micro_recipe.override(eval={"benchmarks": ["humaneval"], "max_new_tokens_for": {}},
                                   promote={"min_accuracy": {}, "registry": f"file://{tmp_path}/registry"})
    with pytest.raises(sandbox.SandboxUnavailable, match=r"recipe\.sandbox\.allow_unisolated"):
        data.run(recipe, tmp_path / "refused")
    recipe = recipe.override(sandbox={"allow_unisolated": True})
    with pytest.warns(UserWarning, match="WITHOUT"):
        data.run(recipe, tmp_path / "data")
    base.run(recipe, tmp_path / "data", tmp_path / "base")
    scores = eval_stage.run(recipe, tmp_path / "data", {"base": tmp_path / "base"}, tmp_path / "eval")
    assert scores["sandbox"] == sandbox.OPTED_OUT
    report = promote.decide(recipe, tmp_path / "eval", tmp_path / "gate")
    assert report["sandbox"] == sandbox.OPTED_OUT
    assert f"ran in: **{sandbox.OPTED_OUT}**" in (tmp_path / "gate" / "report.md").read_text()
    assert sandbox.OPTED_OUT in (tmp_path / "gate" / "report.html").read_text()


def test_landlock_box_before_abi_6_refuses_signals_through_seccomp(monkeypatch):
    """Landlock scopes signals from ABI 6 (Linux 6.12); on an older kernel the seccomp filter refuses them."""
    limits = local.Limits(5.0, 1024, 32, 16)
    if local.probe_landlock():
        pytest.skip(f"needs a kernel with Landlock ABI 4 (Linux 6.7): {local.probe_landlock()}")
    signal_self = "import os\nos.kill(os.getpid(), 0)"
    assert local.run(signal_self, limits, "landlock")  # ABI 6 scoping leaves a process its own signals
    monkeypatch.setattr(landlock, "abi", lambda: 5)
    passed, output = local.run_detailed(signal_self, limits, "landlock")
    assert not passed and "PermissionError" in output


SAME_USER_ATTACKS = '''
import os, signal, subprocess, sys
from posttrain.sandbox import local
assert local.probe_landlock() is None, local.probe_landlock()
victim = subprocess.Popen(["sleep", "60"], env={"SECRET": %r})
attacks = {
    "read the environment of a process of this user":
        f"assert %r.encode() in open('/proc/{victim.pid}/environ', 'rb').read()",
    "kill a process of this user": f"import os, signal\\nos.kill({victim.pid}, signal.SIGKILL)",
    "ptrace a process of this user": f"import ctypes\\nassert ctypes.CDLL(None).ptrace(16, {victim.pid}, 0, 0) == 0",
}
limits = local.Limits(5.0, 1024, 32, 16)
# control: unboxed, the same user reads the environment and may signal (0: the check, not the kill)
control = [local.run(attacks["read the environment of a process of this user"], limits, "none"),
           local.run(f"import os\\nos.kill({victim.pid}, 0)", limits, "none")]
escaped = [name for name, program in attacks.items() if local.run(program, limits, "landlock")]
alive = victim.poll() is None
victim.kill()
print("uid", os.getuid(), "control", control, "escaped", escaped, "victim alive", alive)
sys.exit(1 if escaped or not alive or control != [True, True] else 0)
''' % (TOKEN, TOKEN)


def test_landlock_box_keeps_a_users_own_processes_safe(tmp_path):
    """A laptop's case: the box runs under the user's own uid, beside the user's other processes (as root
    the box has a uid of its own, so the suite above does not show this). Run as an ordinary user: ourselves,
    or, as root, nobody (65534) with the system's interpreter."""
    if local.probe_landlock():
        pytest.skip(f"needs a kernel with Landlock ABI 4 (Linux 6.7): {local.probe_landlock()}")
    paths = [str(Path(local.__file__).parents[2]), str(Path(pytest.__file__).parents[1])]  # src, site-packages
    if os.geteuid() != 0:
        command = [sys.executable, "-c", SAME_USER_ATTACKS]
    else:
        interpreter = local._landlock_interpreter(as_other_user=True)
        if interpreter is None or not all(local._others_can_reach(p) for p in paths):
            pytest.skip("needs a python and this checkout that an ordinary user can read, to pose as one")
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", interpreter[0], "-c",
                   SAME_USER_ATTACKS]
    result = subprocess.run(command, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": os.pathsep.join(paths)},
                            cwd=tmp_path if os.geteuid() != 0 else "/", capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "control [True, True] escaped [] victim alive True" in result.stdout
