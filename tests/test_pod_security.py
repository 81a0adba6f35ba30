"""Every pod this project creates meets Pod Security "restricted", as checkov's Kubernetes checks judge it:
the kustomize and Helm renders (the sandbox Deployment) and the pods of the TrainJobs the launcher builds
(posttrain.training.trainjob). A check that fails is listed, with its reason, in manifests/policy-exceptions.yaml;
any other failure, or an exception that no longer fails, fails here.

checkov lives in a venv of its own (.cache/checkov): it pins boto3, botocore and packaging below what s3fs
and this project need, so it cannot share the test environment.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, installing
from test_manifests import _helm, _kustomize, helm  # noqa: F401  (helm: the fixture)

CHECKOV = "checkov==3.3.30"
EXCEPTIONS = ROOT / "manifests" / "policy-exceptions.yaml"
# The checks behind Pod Security "restricted" (and baseline, which it includes): each must pass on every pod
RESTRICTED = {"CKV_K8S_16": "privileged", "CKV_K8S_17": "hostPID", "CKV_K8S_18": "hostIPC",
              "CKV_K8S_19": "hostNetwork", "CKV_K8S_20": "allowPrivilegeEscalation",
              "CKV_K8S_23": "runAsNonRoot", "CKV_K8S_28": "NET_RAW", "CKV_K8S_37": "capabilities drop",
              "CKV_K8S_31": "seccompProfile"}


@pytest.fixture(scope="session")
def checkov() -> str:
    if found := shutil.which("checkov"):
        return found
    with installing(ROOT / ".cache" / "checkov") as venv:
        binary = venv / "bin" / "checkov"
        if not binary.exists():
            uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
            subprocess.run([uv, "venv", "-q", "--clear", str(venv)], check=True)
            subprocess.run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), CHECKOV], check=True)
        return str(binary)


def trainjob_pods() -> list[dict]:
    """The pod each multi-node stage's TrainJob starts: the runtime patch's pod with the trainer's container."""
    from kubeflow_trainer_api import models

    from posttrain.recipe import load
    from posttrain.training import trainjob

    recipe = load(ROOT / "recipes" / "tulu3-8b.yaml")
    pods = []
    for stage in ("sft", "dpo", "rlvr"):
        job = trainjob.body(recipe, stage, f"posttrain-{stage}-0123456789abcdef", "posttrain",
                            f"ghcr.io/posttrain/{stage}:0.1.0", ["python", "-m", "posttrain.training.launch"])
        assert models.TrainerV1alpha1TrainJob.from_dict(job).to_dict() == job  # what the Trainer API accepts
        (replicated,) = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
        spec = json.loads(json.dumps(replicated["template"]["spec"]["template"]["spec"]))
        trainer = job["spec"]["trainer"]
        spec["containers"][0] |= {"image": trainer["image"], "command": trainer["command"], "env": trainer["env"],
                                  "resources": trainer["resourcesPerNode"]}
        pods.append({"apiVersion": "v1", "kind": "Pod", "spec": spec,
                     "metadata": {"name": f"{job['metadata']['name']}-node-0-0", "namespace": "posttrain"}})
    return pods


def _failures(checkov: str, objects: list[dict], into: Path) -> tuple[set, set]:
    """(failed, passed): sets of (check id, kind/name)."""
    into.mkdir(parents=True, exist_ok=True)
    (into / "objects.yaml").write_text(yaml.safe_dump_all(objects))
    result = subprocess.run([checkov, "-d", str(into), "--framework", "kubernetes", "-o", "json"],
                            capture_output=True, text=True)
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report["summary"]["parsing_errors"] == 0
    key = lambda c: (c["check_id"], "/".join(c["resource"].split(".")[::2]))  # Kind.namespace.name -> Kind/name
    return ({key(c) for c in report["results"]["failed_checks"]},
            {key(c) for c in report["results"]["passed_checks"]})


def _exceptions() -> dict[tuple[str, str], str]:
    entries = yaml.safe_load(EXCEPTIONS.read_text())["exceptions"]
    for entry in entries:
        assert entry["reason"].strip(), entry
    return {(entry["check"], resource): entry["reason"] for entry in entries for resource in entry["resources"]}


@pytest.mark.parametrize("render", ["kustomize", "helm", "trainjob"])
def test_every_pod_meets_restricted_and_every_other_finding_is_a_listed_exception(checkov, helm, render, tmp_path):
    objects = {"kustomize": lambda: _kustomize("overlays/gpu"), "helm": lambda: _helm(helm, "values-gpu.yaml"),
               "trainjob": trainjob_pods}[render]()
    failed, passed = _failures(checkov, objects, tmp_path / render)
    pods = {f"{o['kind']}/{o['metadata']['name']}" for o in objects if o["kind"] in ("Pod", "Deployment")}
    assert pods
    for pod in pods:
        for check, what in RESTRICTED.items():
            assert (check, pod) in passed, f"{pod}: {check} ({what}) does not pass"
    listed = _exceptions()
    unlisted = sorted(f for f in failed if f not in listed)
    assert not unlisted, f"failing checks not in {EXCEPTIONS.name}: {unlisted}"
    stale = sorted(k for k in listed if k[1] in pods and k not in failed)
    assert not stale, f"{EXCEPTIONS.name} lists checks that pass now: {stale}"
