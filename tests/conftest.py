import contextlib
import io
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from posttrain.recipe import Recipe, load

ROOT = Path(__file__).resolve().parents[1]

# Under pytest-xdist each worker's torch (and the processes it starts) gets its share of the cores: two workers
# with a thread per core each would oversubscribe the CPU, and OpenMP's waiting threads spin on it.
if (_workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _workers)))

# In CI (`CI` set, as .ci/run and every CI service set it) a skip is a failure unless its reason starts with
# one of these: CI installs everything else a test needs (the test extra, bubblewrap, Chromium), so any
# other skip would be a test the README promises and nobody ran.
IN_CI = bool(os.environ.get("CI"))
SKIPS_ALLOWED_IN_CI = ("needs a GPU", "needs a cluster")


def _skip_reason(report) -> str:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return reason.removeprefix("Skipped: ")


def _fail_a_skip_in_ci(report) -> None:
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if not reason.startswith(SKIPS_ALLOWED_IN_CI):
            report.outcome = "failed"
            report.longrepr = (f"skipped in CI ({reason}); in CI only a test whose skip reason starts with "
                               f"{' or '.join(map(repr, SKIPS_ALLOWED_IN_CI))} may skip (tests/conftest.py)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_a_skip_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):  # a module-level skip or importorskip
    outcome = yield
    _fail_a_skip_in_ci(outcome.get_result())


def pytest_terminal_summary(terminalreporter):
    """The number of skipped tests and each reason, whatever the verbosity (CI's log shows what did not run)."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if not hasattr(r, "wasxfail")]
    reasons: dict[str, int] = {}
    for report in skipped:
        reasons[_skip_reason(report)] = reasons.get(_skip_reason(report), 0) + 1
    terminalreporter.write_sep("-", f"{len(skipped)} skipped")
    for reason, count in sorted(reasons.items()):
        terminalreporter.write_line(f"{count:4d}  {reason}")


# The suite runs on every core (pytest-xdist, `-n auto --dist loadfile` in pyproject.toml): on 2 cores most tests
# leave one idle (a kfp.local task process importing torch, a subprocess, a server starting). A module's tests
# stay on one worker, so its module- and session-scoped fixtures are built once: every test of the shared
# pipeline runs (below) is in test_pipeline_local.py. Modules are handed out longest first (that one, the
# end-to-end ones, the `slow` ones, the rest), so that no long module starts last and runs alone (xdist's own
# order, most tests first, put the one-test end-to-end modules last: a 6-minute tail on one worker). (xdist's `loadgroup` cannot group here:
# it renames a test's `_nodeid`, which pytest 9 no longer reads.)
SHARED_RUNS = ("passing_micro_run", "refused_run_with_a_baseline")


def pytest_collection_modifyitems(items):
    def rank(item) -> tuple[int, int]:
        fixtures = getattr(item, "fixturenames", ())
        if set(SHARED_RUNS) & set(fixtures):  # the passing run's own tests before the runs derived from it
            return 0, "refused_run_with_a_baseline" in fixtures
        return (1 if item.get_closest_marker("e2e") else 2 if item.get_closest_marker("slow") else 3), 0

    items.sort(key=rank)  # stable: collection order within each rank; xdist keeps it (--no-loadscope-reorder)


@contextlib.contextmanager
def installing(cache: Path):
    """One process at a time installs into `cache` (a tool the tests download once: helm, checkov)."""
    from filelock import FileLock

    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache) + ".lock"):
        yield cache


@pytest.fixture
def micro_recipe():
    return micro()


def micro() -> Recipe:
    """The tiny recipe shrunk so every stage runs in seconds (nothing is expected to learn); a function, for
    fixtures of a wider scope than micro_recipe's."""
    return load(ROOT / "recipes" / "tiny.yaml").override(
        model={"tiny": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
                        "vocab_size": 320, "max_positions": 256}},
        data={"sft_rows": 64, "preference_prompts": 16, "rlvr_prompts": 16, "heldout_rows": 16,
              "synthesis": {"ifeval_rows": 8, "code_rows": 4, "rlvr_ifeval_rows": 4, "heldout_ifeval_rows": 8}},
        sft={"epochs": 1, "batch_size": 32, "warmup": 0},
        preference={"samples_per_prompt": 2, "max_new_tokens": 8, "heldout_fraction": 0.25, "include_reference": True},
        dpo={"batch_size": 8},
        rlvr={"max_steps": 2, "batch_size": 16, "num_generations": 4, "max_completion_length": 8},
        eval={"max_new_tokens": 8, "max_new_tokens_for": {"ifeval": 8, "humaneval": 8}, "max_prompt_tokens": 64},
    )


@pytest.fixture
def s3(monkeypatch):
    """An S3 API on loopback (moto's server) with a `posttrain` bucket; fsspec and boto3 point at it."""
    from moto import server as moto_server
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL": endpoint, "FSSPEC_S3_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    import boto3
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # cached instances remember an earlier server's endpoint
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="posttrain")
    yield endpoint
    s3fs.S3FileSystem.clear_instance_cache()
    server.stop()


def reply_json(handler, body, status: int = 200) -> None:
    """Answer an http.server request with a JSON body (the fake KFP and OpenAI servers)."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@pytest.fixture
def chat_server():
    """A local OpenAI-compatible chat endpoint: `start(answer)` serves `answer(body) -> str | int` (an int is
    an HTTP error status) and returns the base URL; every request body is recorded in `.bodies`."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    servers = []

    class Endpoint:
        bodies: list[dict] = []

        def start(self, answer) -> str:
            bodies = self.bodies

            class Handler(BaseHTTPRequestHandler):
                def do_POST(self):
                    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                    bodies.append(body)
                    result = answer(body)
                    if isinstance(result, int):
                        self.send_response(result)
                        self.end_headers()
                    else:
                        reply_json(self, {"choices": [{"message": {"role": "assistant", "content": result}}]})

                def log_message(self, *args):
                    pass

            server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers.append(server)
            return f"http://127.0.0.1:{server.server_port}/v1"

    yield Endpoint()
    for server in servers:
        server.shutdown()


@pytest.fixture
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server on loopback (SQLite store, artifacts served from a local folder); its URL."""
    yield from _serve_mlflow(tmp_path_factory.mktemp("mlflow-server"))


def _serve_mlflow(root: Path):
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
        stdout=open(root / "server.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # minutes on a loaded machine: it migrates its database first
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(1)
    # /health answers before the API's first request has been served, which takes seconds more on a loaded
    # machine: a client with a short timeout (tracking.preflight: 10 s) would call the server unusable.
    urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=300).read()
    try:
        yield url
    finally:
        import signal

        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:  # its job workers (huey consumers) outlive the server's exit: end the whole group
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.wait()


# The micro pipeline end to end through kfp.local costs minutes on 2 cores, most of it a dozen task processes
# importing torch, transformers and MLflow (15-20 s each): the end-to-end tests assert on shared runs instead of
# each paying for its own (issue 27), and a run that differs in a few sections starts from a copy of one.
# A test may add files to a shared run (a screenshot) but changes nothing another test reads; a test that reruns
# from a shared run (changing a field, resuming) copies its directory first: shutil.copytree(run.run, tmp_path / "run").


@pytest.fixture(scope="session")
def passing_micro_run(tmp_path_factory):
    """`posttrain run --local` of the micro recipe with a gate it passes, tracked to a real MLflow server and
    promoted to a file registry: SimpleNamespace(run=run dir, registry=its root, report=report.json,
    printed=the lines a terminal-less run prints, mlflow=the server's URL)."""
    from posttrain import cli

    base = tmp_path_factory.mktemp("passing-micro-run")
    (base / "mlflow").mkdir()
    server = _serve_mlflow(base / "mlflow")
    url = next(server)
    try:
        recipe = micro().override(tracking={"uri": url},
                                  promote={"min_accuracy": {"arithmetic": 0.0}, "min_gain_over_base": -1.0,
                                           "registry": (base / "run" / "registry").as_uri()})
        (base / "recipe.yaml").write_text(recipe.to_yaml())
        printed = io.StringIO()
        with pytest.MonkeyPatch.context() as env, contextlib.redirect_stdout(printed):
            env.setenv("OMP_NUM_THREADS", "1")
            code = cli.main(["run", str(base / "recipe.yaml"), "--local", "--out", str(base / "run")])
        assert code == 0, printed.getvalue()[-3000:]
        yield SimpleNamespace(run=base / "run", registry=base / "run" / "registry", recipe=recipe, mlflow=url,
                              report=json.loads((base / "run" / "report.json").read_text()),
                              printed=printed.getvalue().splitlines())
    finally:
        server.close()  # stops the server


@pytest.fixture(scope="session")
def refused_run_with_a_baseline(passing_micro_run, tmp_path_factory):
    """The passing run again (a copy of its directory: kfp.local reuses data..rlvr) with a second tiny model as
    `eval.baselines` and a gate it cannot pass (arithmetic 100%), so eval and gate run again and promote does
    not: SimpleNamespace(run=run dir, registry=its root, baseline=the model's path, recipe=the recipe it ran,
    report=what local.run returned, fresh=the pipeline run directories this run added under run/kfp).
    Tracked to the passing run's MLflow server: the tests of the passing run run before it (see above)."""
    import shutil

    from posttrain.models import tiny
    from posttrain.pipelines import local

    base = tmp_path_factory.mktemp("refused-run")
    run = shutil.copytree(passing_micro_run.run, base / "run")
    recipe = passing_micro_run.recipe
    texts = ["The answer is 12.", "Answer in lowercase letters only.", "def add(a, b):\n    return a + b"] * 20
    tiny.build(texts, recipe.model.tiny, base / "tiny-baseline", seed=7)
    recipe = recipe.override(eval={"baselines": [str(base / "tiny-baseline")]},
                             promote={"min_accuracy": {"arithmetic": 1.0}, "min_gain_over_base": -1.0,
                                      "registry": (base / "registry").as_uri()})
    before = set((run / "kfp").iterdir())
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OMP_NUM_THREADS", "1")
        report = local.run(recipe, run, out=io.StringIO())
    return SimpleNamespace(run=run, registry=base / "registry", baseline=base / "tiny-baseline", recipe=recipe,
                           report=report, fresh=sorted(set((run / "kfp").iterdir()) - before))
