"""Multi-node training: a stage with `cluster.<stage>.nodes` > 1 runs as a Kubeflow Trainer v2 TrainJob.

Expects Kubeflow Trainer v2.3 or later (`trainer.kubeflow.org/v1alpha1`, `runtimePatches`) and its shipped
ClusterTrainingRuntime `torch-distributed`, whose pods start our command with torchrun's `PET_*` variables set.
The stage's pod (the KFP task) is the launcher: it copies the sealed inputs onto the checkpoint volume, which
every node mounts; creates the TrainJob under a name derived from the recipe and the inputs (a retried task
adopts the job it created before: HTTP 409); prints the logs of the job's pods while it waits for `Complete`
or `Failed`; deletes the job when the task is cancelled (SIGTERM) or its timeout passes; and after `Complete`
copies the output the job sealed into the task's output and checks it against its manifest.
"""
from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

from posttrain.training import checkpoints
from posttrain.recipe import Recipe
from posttrain.store import MANIFEST, file_digests, read_manifest

GROUP, VERSION, PLURAL, KIND = "trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob"
RUNTIME = "torch-distributed"  # ClusterTrainingRuntime shipped with Kubeflow Trainer
CONTAINER = "node"  # the torch runtime's replicated job and container name
IMAGE_ENV = "POSTTRAIN_IMAGE"  # set by the pipeline on multi-node stages: the image the job's pods run
NAMESPACE_ENV = "POSTTRAIN_NAMESPACE"  # the launcher pod's namespace (downward API)
RUN_AS = 1000  # the images' user and group (images/*/Dockerfile: USER 1000:1000); the volumes' fsGroup
# Pod Security "restricted" for the job's pods (tests/test_pod_security.py checks them with checkov)
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
                "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
                      "seccompProfile": {"type": "RuntimeDefault"}}


class TrainJobFailed(RuntimeError):
    """The TrainJob reported `Failed`, or did not finish within the stage's timeout."""


def name(stage: str, key: str) -> str:
    """Deterministic TrainJob name: the same stage, recipe and inputs give the same job."""
    return f"posttrain-{stage}-{key[:16]}"


def body(recipe: Recipe, stage: str, job: str, namespace: str, image: str, command: list[str]) -> dict:
    """The TrainJob object for `stage` as the recipe's `cluster.<stage>` describes it."""
    res, cluster = getattr(recipe.cluster, stage), recipe.cluster
    limits = {res.accelerator: str(res.gpus)} | ({"cpu": res.cpu} if res.cpu else {}) | \
        ({"memory": res.memory} if res.memory else {})
    env = [{"name": checkpoints.ENV, "value": cluster.checkpoint_mount}]
    env += [{"name": var, "valueFrom": {"secretKeyRef": {"name": secret.secret, "key": key}}}
            for secret in res.secrets for key, var in secret.env.items()]
    volumes = [{"name": "checkpoints", "persistentVolumeClaim": {"claimName": cluster.checkpoint_volume}}]
    mounts = [{"name": "checkpoints", "mountPath": cluster.checkpoint_mount}]
    if res.shm:
        volumes.append({"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": res.shm}})
        mounts.append({"name": "shm", "mountPath": "/dev/shm"})
    pod = {"volumes": volumes, "securityContext": POD_SECURITY,
           "containers": [{"name": CONTAINER, "volumeMounts": mounts, "securityContext": CONTAINER_SECURITY}]}
    if res.node_selector:
        pod["nodeSelector"] = dict(res.node_selector)
    if res.tolerations:
        pod["tolerations"] = [t.model_dump(exclude_none=True) for t in res.tolerations]
    replicated = {"name": CONTAINER, "template": {"spec": {"template": {"spec": pod}}}}
    spec = {
        "runtimeRef": {"apiGroup": GROUP, "kind": "ClusterTrainingRuntime", "name": RUNTIME},
        "trainer": {"image": image, "command": command, "env": env, "numNodes": res.nodes,
                    "numProcPerNode": res.gpus, "resourcesPerNode": {"limits": limits, "requests": limits}},
        "runtimePatches": [{"manager": "posttrain",
                            "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [replicated]}}}}],
    }
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
            "metadata": {"name": job, "namespace": namespace,
                         "labels": {"app.kubernetes.io/part-of": "posttrain", "posttrain/stage": stage}},
            "spec": spec}


def _stage_inputs(inputs: list[Path], into: Path) -> list[Path]:
    """Copies of the sealed inputs on the shared volume (kept when a copy with the same manifest is there)."""
    copies = []
    for number, source in enumerate(inputs):
        target = into / f"input{number}"
        if not ((target / MANIFEST).is_file() and read_manifest(target)["sha256"] == read_manifest(source)["sha256"]):
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target)
        copies.append(target)
    return copies


def _condition(job: dict) -> tuple[str, str] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return condition["type"], f"{condition.get('reason', '')}: {condition.get('message', '')}".strip(": ")
    return None


class _Logs:
    """Prints what the job's pods logged since the last call (pods found by their JobSet label)."""

    def __init__(self, core, namespace: str, job: str, log):
        self.core, self.namespace, self.job, self.log = core, namespace, job, log
        self.seen: dict[str, int] = {}

    def poll(self) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            pods = self.core.list_namespaced_pod(self.namespace,
                                                 label_selector=f"jobset.sigs.k8s.io/jobset-name={self.job}")
            for pod in pods.items:
                pod_name = pod.metadata.name
                lines = self.core.read_namespaced_pod_log(pod_name, self.namespace).splitlines()
                for line in lines[self.seen.get(pod_name, 0):]:
                    self.log(f"[{pod_name}] {line}")
                self.seen[pod_name] = len(lines)
        except ApiException as exc:  # a pod not started yet, or gone: logs are best effort
            if exc.status not in (400, 404):
                raise


def run(recipe: Recipe, stage: str, inputs: list[str | Path], out_dir: str | Path, *, api_client=None,
        namespace: str | None = None, image: str | None = None, timeout_s: float | None = None,
        poll_s: float = 10.0, log=print) -> dict:
    """Train `stage` as a TrainJob and copy its sealed output into `out_dir`; returns the stage summary."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    if stage == "rlvr" and recipe.rlvr.algorithm == "ppo":
        raise ValueError("recipe.cluster.rlvr.nodes: PPO runs in one process; use nodes: 1")
    if not os.environ.get(checkpoints.ENV):
        raise RuntimeError(f"{stage}: a multi-node stage needs the checkpoint volume ({checkpoints.ENV} unset)")
    if api_client is None:
        config.load_incluster_config()
        api_client = client.ApiClient()
    namespace = namespace or os.environ[NAMESPACE_ENV]
    image = image or os.environ[IMAGE_ENV]
    res = getattr(recipe.cluster, stage)
    timeout_s = (res.timeout_s or None) if timeout_s is None else timeout_s
    inputs, out_dir = [Path(p) for p in inputs], Path(out_dir)
    key = checkpoints.key(stage, recipe.digest(), {f"input{i}": p for i, p in enumerate(inputs)})
    job = name(stage, key)
    work = Path(os.environ[checkpoints.ENV]) / "jobs" / job  # on the volume every node mounts
    work.mkdir(parents=True, exist_ok=True)
    (work / "recipe.yaml").write_text(recipe.to_yaml())
    copies = _stage_inputs(inputs, work)
    command = ["python", "-m", "torch.distributed.run", "-m", "posttrain.training.launch", stage, str(work / "recipe.yaml"),
               *map(str, copies), str(work / "output")]
    objects = client.CustomObjectsApi(api_client)

    def get() -> dict | None:
        try:
            return objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, job)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return None

    def delete(why: str) -> None:
        try:
            objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, job)
            log(f"{stage}: deleted TrainJob {namespace}/{job} ({why})")
        except ApiException as exc:
            if exc.status != 404:
                raise

    def create() -> None:
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                body(recipe, stage, job, namespace, image, command))
        log(f"{stage}: created TrainJob {namespace}/{job}: {res.nodes} nodes x {res.gpus} processes")

    try:
        create()
    except ApiException as exc:
        if exc.status != 409:
            raise
        existing = _condition(get() or {})
        if existing and existing[0] == "Failed":  # a retry after a failed gang: all nodes restart, and resume
            delete(f"it failed before: {existing[1]}; starting it again from the newest checkpoint")
            while get() is not None:
                time.sleep(poll_s)
            create()
        else:
            log(f"{stage}: TrainJob {namespace}/{job} exists (a retry of this task): waiting for it")

    def on_term(signum, frame):  # the task was cancelled: do not leave GPUs busy behind it
        delete("the task was stopped")
        raise SystemExit(143)

    previous = signal.signal(signal.SIGTERM, on_term)
    logs = _Logs(client.CoreV1Api(api_client), namespace, job, log)
    deadline = None if not timeout_s else time.monotonic() + timeout_s
    try:
        while True:
            logs.poll()
            outcome = _condition(get() or {})
            if outcome and outcome[0] == "Complete":
                break
            if outcome:
                raise TrainJobFailed(f"{stage}: TrainJob {namespace}/{job} failed: {outcome[1]}")
            if deadline and time.monotonic() > deadline:
                delete("timeout")
                raise TrainJobFailed(f"{stage}: TrainJob {namespace}/{job} did not finish within {timeout_s:g}s "
                                     f"(recipe.cluster.{stage}.timeout_s); it was deleted")
            time.sleep(poll_s)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return _collect(stage, work / "output", out_dir)


def _collect(stage: str, produced: Path, out_dir: Path) -> dict:
    """Copy the job's sealed output into the task's output; the copy is checked against the manifest."""
    manifest = read_manifest(produced)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(produced, out_dir, dirs_exist_ok=True)
    if file_digests(out_dir, skip={MANIFEST}) != manifest["files"]:
        raise TrainJobFailed(f"{stage}: the copy of {produced} in {out_dir} does not match its manifest")
    shutil.rmtree(produced.parent, ignore_errors=True)  # inputs and output copies on the volume
    return manifest["summary"]
