"""Multi-node stages as Kubeflow Trainer TrainJobs (issue 18), against a fake Kubernetes API on loopback.

The fake records what the launcher creates and deletes; as a controller would, it starts the TrainJob's
trainer command (one node, one process, torchrun's PET_* variables) and reports Complete or Failed from
the process's exit status, or a scripted condition.
"""
import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

from posttrain.training import checkpoints, trainjob
from posttrain.stages import base, data
from posttrain.store import file_digests, read_manifest

from conftest import reply_json

import kubernetes  # noqa: E402  (the test extra)
from kubeflow_trainer_api import models  # noqa: E402

pytestmark = pytest.mark.slow  # a module of a minute or more: handed out first (conftest.py)

PREFIX = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/team/trainjobs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeKubernetes:
    """`outcome`: "run" (execute the trainer command), ("Failed", reason, message) or None (never finishes)."""

    def __init__(self, outcome="run", existing: dict | None = None):
        self.outcome, self.created, self.deleted, self.process = outcome, [], [], None
        self.existing = dict(existing or {})  # jobs made before (by the task's first attempt): name -> conditions
        self.live = set(self.existing)
        self.calls = set()  # (method, path with names replaced), every request the launcher made
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def parse_request(self):
                ok = super().parse_request()
                fake.calls.add((self.command, urlparse(self.path).path))
                return ok

            def do_POST(self):
                obj = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if obj["metadata"]["name"] in fake.live:
                    return reply_json(self, {"kind": "Status", "code": 409, "reason": "AlreadyExists"}, 409)
                fake.created.append(obj)
                fake.live.add(obj["metadata"]["name"])
                if fake.outcome == "run":
                    fake.start(obj["spec"]["trainer"])
                reply_json(self, obj, 201)

            def do_GET(self):
                path = urlparse(self.path).path
                if path.startswith(PREFIX + "/"):
                    job = path.rsplit("/", 1)[1]
                    if job not in fake.live:
                        return reply_json(self, {"kind": "Status", "code": 404}, 404)
                    conditions = fake.existing[job] if job in fake.existing else fake.conditions()
                    return reply_json(self, {"metadata": {"name": job}, "status": {"conditions": conditions}})
                if path == "/api/v1/namespaces/team/pods":
                    pods = [{"metadata": {"name": "job-node-0-0"}}] if fake.created else []
                    return reply_json(self, {"kind": "PodList", "apiVersion": "v1", "items": pods})
                if path.endswith("/log"):
                    text = fake.log_path.read_text() if fake.process else "starting\n"
                    data = text.encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    return self.wfile.write(data)
                reply_json(self, {"kind": "Status", "code": 404}, 404)

            def do_DELETE(self):
                job = urlparse(self.path).path.rsplit("/", 1)[1]
                fake.deleted.append(job)
                fake.existing.pop(job, None)
                fake.live.discard(job)
                reply_json(self, {"kind": "Status", "status": "Success"})

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def start(self, trainer):
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PET_NNODES": "1",
               "PET_NPROC_PER_NODE": "1", "PET_NODE_RANK": "0", "PET_MASTER_ADDR": "127.0.0.1",
               "PET_MASTER_PORT": str(_free_port()), "OMP_NUM_THREADS": "1"}
        env |= {e["name"]: e["value"] for e in trainer["env"] if "value" in e}  # Secrets do not exist here
        self.log_path = Path(env[checkpoints.ENV]) / "fake-node-0.log"
        self.process = subprocess.Popen(trainer["command"], env=env, stdout=open(self.log_path, "w"),
                                        stderr=subprocess.STDOUT)

    def conditions(self):
        if isinstance(self.outcome, tuple):
            return [{"type": self.outcome[0], "status": "True", "reason": self.outcome[1], "message": self.outcome[2]}]
        if self.process is None or self.process.poll() is None:
            return []
        kind = "Complete" if self.process.returncode == 0 else "Failed"
        return [{"type": kind, "status": "True", "reason": f"exit {self.process.returncode}", "message": ""}]

    def client(self):
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = f"http://127.0.0.1:{self.server.server_port}"
        return client.ApiClient(configuration)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from conftest import ROOT
    from posttrain.recipe import load

    recipe = load(ROOT / "recipes" / "tiny.yaml").override(
        model={"tiny": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
                        "vocab_size": 320, "max_positions": 256}},
        data={"sft_rows": 32, "preference_prompts": 1, "rlvr_prompts": 1, "heldout_rows": 1, "synthesis": {}},
        sft={"epochs": 1, "batch_size": 8, "warmup": 0, "checkpoints": {"every": 2, "keep": 1}},
        cluster={"sft": {"nodes": 2, "gpus": 8, "cpu": "96", "memory": "1500Gi", "shm": "64Gi",
                         "node_selector": {"pool": "h100"}, "timeout_s": 3600,
                         "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                         "secrets": [{"secret": "posttrain-hf-token", "env": {"token": "HF_TOKEN"}}]}},
    )
    root = tmp_path_factory.mktemp("trainjob")
    data.run(recipe, root / "data")
    base.run(recipe, root / "data", root / "base")
    return recipe, root


def _run(recipe, root, fake, out, monkeypatch, **kwargs):
    # The launcher and the job's nodes mount the volume at the same path: here, a directory.
    recipe = recipe.override(cluster={"checkpoint_mount": str(root / "volume")})
    monkeypatch.setenv(checkpoints.ENV, str(root / "volume"))
    lines = []
    summary = trainjob.run(recipe, "sft", [root / "base", root / "data"], out, api_client=fake.client(),
                           namespace="team", image="ghcr.io/posttrain/sft:0.1.0", poll_s=0.2, log=lines.append,
                           **kwargs)
    return summary, lines


def test_complete_trainjob_gives_a_sealed_output_and_a_valid_trainjob(prepared, tmp_path, monkeypatch):
    recipe, root = prepared
    fake = FakeKubernetes("run")
    summary, lines = _run(recipe, root, fake, tmp_path / "model", monkeypatch)

    [job] = fake.created
    parsed = models.TrainerV1alpha1TrainJob.from_dict(job)  # the Trainer API's own models
    assert parsed.to_dict() == job  # nothing unknown was dropped, nothing missing was filled in
    spec = parsed.spec
    assert (spec.runtime_ref.name, spec.runtime_ref.kind) == ("torch-distributed", "ClusterTrainingRuntime")
    assert (spec.trainer.num_nodes, spec.trainer.num_proc_per_node) == (2, 8)
    assert spec.trainer.resources_per_node.limits["nvidia.com/gpu"].actual_instance == "8"
    assert spec.trainer.image == "ghcr.io/posttrain/sft:0.1.0"
    pod = spec.runtime_patches[0].training_runtime_spec.template.spec.replicated_jobs[0].template.spec.template.spec
    assert pod.node_selector == {"pool": "h100"} and pod.tolerations[0].key == "nvidia.com/gpu"
    assert pod.volumes[0].persistent_volume_claim.claim_name == "posttrain-checkpoints"
    assert [m.mount_path for m in pod.containers[0].volume_mounts] == [str(root / "volume"), "/dev/shm"]
    env = {e.name: e for e in spec.trainer.env}
    assert env["HF_TOKEN"].value_from.secret_key_ref.name == "posttrain-hf-token"
    assert env[checkpoints.ENV].value == str(root / "volume")

    manifest = read_manifest(tmp_path / "model")
    assert manifest["stage"] == "sft" and summary == manifest["summary"] and summary["steps"] == 4
    assert file_digests(tmp_path / "model", skip={"manifest.json"}) == manifest["files"]
    assert any("[job-node-0-0]" in line and "sft:" in line for line in lines)  # the node's log, streamed
    assert not fake.deleted


def test_failed_trainjob_raises_naming_the_job_and_its_reason(prepared, tmp_path, monkeypatch):
    recipe, root = prepared
    fake = FakeKubernetes(("Failed", "BackoffLimitExceeded", "node-1 exited with code 137"))
    with pytest.raises(trainjob.TrainJobFailed, match=r"TrainJob team/posttrain-sft-\w{16} failed: "
                                                      r"BackoffLimitExceeded: node-1 exited with code 137"):
        _run(recipe, root, fake, tmp_path / "model", monkeypatch)
    assert not (tmp_path / "model" / "manifest.json").exists()


def test_timeout_deletes_the_trainjob_and_says_so(prepared, tmp_path, monkeypatch):
    recipe, root = prepared
    fake = FakeKubernetes(None)
    with pytest.raises(trainjob.TrainJobFailed, match=r"did not finish within 1s \(recipe\.cluster\.sft\.timeout_s\); "
                                                      r"it was deleted"):
        _run(recipe, root, fake, tmp_path / "model", monkeypatch, timeout_s=1)
    job = fake.created[0]["metadata"]["name"]
    assert fake.deleted == [job]

    # The pipeline's service account may do exactly what the launcher just did, nothing more.
    verbs = {"POST": "create", "GET": "get", "DELETE": "delete"}
    used = set()
    for method, path in fake.calls:
        if path.startswith(PREFIX):
            used.add(("trainer.kubeflow.org", "trainjobs", verbs[method]))
        elif path.endswith("/log"):
            used.add(("", "pods/log", "get"))
        elif path.endswith("/pods"):
            used.add(("", "pods", "list"))
        else:
            raise AssertionError(f"unexpected request {method} {path}")
    from conftest import ROOT
    import yaml

    role = next(yaml.safe_load_all((ROOT / "manifests" / "base" / "rbac.yaml").read_text()))
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    assert granted == used


def _job_name(recipe, root):
    recipe = recipe.override(cluster={"checkpoint_mount": str(root / "volume")})
    inputs = {"input0": root / "base", "input1": root / "data"}
    return trainjob.name("sft", checkpoints.key("sft", recipe.digest(), inputs))


def test_a_retried_task_adopts_the_running_trainjob(prepared, tmp_path, monkeypatch):
    recipe, root = prepared
    assert trainjob.name("sft", "0123456789abcdef0123") == "posttrain-sft-0123456789abcdef"  # a DNS-1035 label
    job = _job_name(recipe, root)
    fake = FakeKubernetes(None, existing={job: []})  # created by the task's first attempt, still running
    with pytest.raises(trainjob.TrainJobFailed, match="it was deleted"):
        _run(recipe, root, fake, tmp_path / "model", monkeypatch, timeout_s=1)
    assert fake.created == [] and fake.deleted == [job]  # waited on the existing job, created none


def test_a_retry_after_a_failed_trainjob_starts_the_gang_again(prepared, tmp_path, monkeypatch):
    recipe, root = prepared
    job = _job_name(recipe, root)
    failed = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "node-3 lost"}]
    fake = FakeKubernetes(("Failed", "DeadlineExceeded", "again"), existing={job: failed})
    with pytest.raises(trainjob.TrainJobFailed, match="DeadlineExceeded: again"):
        _run(recipe, root, fake, tmp_path / "model", monkeypatch)
    assert fake.deleted == [job] and [c["metadata"]["name"] for c in fake.created] == [job]
