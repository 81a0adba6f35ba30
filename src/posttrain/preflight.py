"""Before a run starts on a cluster: is every object the recipe names there, and usable?

`check` asks the Kubernetes API (with the account it is given: the user's kubeconfig for `posttrain submit`
and `posttrain preflight`, the pipeline's service account for the pipeline's first task) for the namespace and
its Pod Security level, each Secret and key the stages read, the checkpoint volume (Bound, ReadWriteMany, its
storage class), Kubeflow Trainer when a stage runs on several nodes, nodes for each stage's node selector and
accelerator, the sandbox and MLflow services; and writes a probe file into the registry bucket. It returns
every problem at once, each with the command or manifest that fixes it: a run that starts anyway would fail
hours in, one Kubernetes event at a time.
"""
from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from urllib.parse import urlparse

from posttrain.recipe import Recipe
from posttrain.stage_table import NAMES as STAGES
from posttrain.training import trainjob

DEFAULT_NAMESPACE = "posttrain"  # manifests/base/namespace.yaml
ENFORCE = "pod-security.kubernetes.io/enforce"
LEVELS = ("privileged", "baseline", "restricted")  # Pod Security Standards, loosest first
# The strictest level every pod this project creates meets: the TrainJob pods (training/trainjob.py), the
# sandbox (manifests/), the KFP task pods (pipelines/tulu3.py sets their identity, KFP >= 2.15 the rest).
# tests/test_pod_security.py proves it with checkov on the renders and on the TrainJob objects.
PODS_MEET = "restricted"
TRAINER_CRD = f"{trainjob.PLURAL}.{trainjob.GROUP}"
TRAINER_INSTALL = ("kubectl apply --server-side -k "
                   "'https://github.com/kubeflow/trainer.git/manifests/overlays/manager?ref=v2.3.0'")
RUNTIMES_INSTALL = ("kubectl apply --server-side -k "
                    "'https://github.com/kubeflow/trainer.git/manifests/overlays/runtimes?ref=v2.3.0'")
DEPLOY = "kubectl apply -k manifests/overlays/gpu  (README: Deploy on a cluster)"


@dataclass(frozen=True)
class Problem:
    piece: str  # the object, e.g. "Secret posttrain/posttrain-judge-api-key"
    what: str  # what is wrong with it
    fix: str  # the command or manifest that fixes it

    def __str__(self) -> str:
        return f"{self.piece}: {self.what}\n    fix: {self.fix}"


class PreflightFailed(RuntimeError):
    def __init__(self, problems: list[Problem], namespace: str):
        self.problems = problems
        super().__init__(f"preflight: {len(problems)} missing or unusable in namespace {namespace}; the run was "
                         "not started:\n" + "\n".join(f"  - {p}" for p in problems))


class _Api:
    """GETs through the kubernetes client, as plain JSON: None for 404; 403 raises _Forbidden."""

    def __init__(self, api_client):
        self.api_client = api_client

    def get(self, path: str, **query) -> dict | None:
        from kubernetes.client.exceptions import ApiException

        try:
            response = self.api_client.call_api(path, "GET", query_params=list(query.items()),
                                                header_params={"Accept": "application/json"},
                                                auth_settings=["BearerToken"], _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status in (401, 403):
                raise _Forbidden(path) from None
            raise
        return json.loads(response[0].data)


class _Forbidden(Exception):
    pass


def _secret_fix(namespace: str, name: str, keys: list[str]) -> str:
    literals = " ".join(f"--from-literal={key}=..." for key in keys)
    return f"kubectl -n {namespace} create secret generic {name} {literals}"


def _secrets(recipe: Recipe) -> dict[str, tuple[set[str], list[str]]]:
    """Secret name -> (keys read, stages reading them)."""
    found: dict[str, tuple[set[str], list[str]]] = {}
    for stage in STAGES:
        for secret in getattr(recipe.cluster, stage).secrets:
            keys, stages = found.setdefault(secret.secret, (set(), []))
            keys.update(secret.env)
            stages.append(stage)
    return found


def _service(url: str) -> tuple[str, str] | None:
    """(namespace, name) of a cluster Service URL such as http://name.namespace.svc:8080, else None."""
    parts = (urlparse(url).hostname or "").split(".")
    if len(parts) >= 3 and parts[2] == "svc":
        return parts[1], parts[0]
    return None


def _check_service(api: _Api, url: str, field: str, deploy: str) -> list[Problem]:
    namespace, name = _service(url)
    piece = f"Service {namespace}/{name} ({field}: {url})"
    if api.get(f"/api/v1/namespaces/{namespace}/services/{name}") is None:
        return [Problem(piece, "does not exist", deploy)]
    endpoints = api.get(f"/api/v1/namespaces/{namespace}/endpoints/{name}") or {}
    if not any(subset.get("addresses") for subset in endpoints.get("subsets") or []):
        return [Problem(piece, "has no ready pod behind it",
                        f"kubectl -n {namespace} describe service {name}; kubectl -n {namespace} get pods")]
    return []


def _check_http(url: str, field: str, health: str) -> list[Problem]:
    import urllib.request

    try:
        urllib.request.urlopen(url.rstrip("/") + health, timeout=10)
    except Exception as exc:  # URLError, HTTPError, timeouts: all mean "not answering"
        return [Problem(f"{field}: {url}", f"does not answer {health}: {type(exc).__name__}: {str(exc)[:120]}",
                        f"start the server, or change {field}")]
    return []


def _check_bucket(registry: str) -> list[Problem]:
    """A probe object written and removed through fsspec, as promote will write (its credentials: this env)."""
    import fsspec

    probe = f"{registry.rstrip('/')}/.preflight-{uuid.uuid4().hex}"
    try:
        fs, path = fsspec.core.url_to_fs(probe)
        fs.pipe_file(path, b"preflight")
        fs.rm_file(path)
    except Exception as exc:  # botocore's, s3fs's, gcsfs's errors: all mean "promote cannot write here"
        return [Problem(f"registry bucket {registry} (recipe.promote.registry)",
                        f"not writable: {type(exc).__name__}: {str(exc)[:160]}",
                        "create the bucket and give the credentials in Secret posttrain-s3-credentials write "
                        f"access, e.g. aws s3 mb {registry}")]
    return []


def _check_namespace(api: _Api, namespace: str) -> list[Problem]:
    found = api.get(f"/api/v1/namespaces/{namespace}")
    if found is None:
        return [Problem(f"Namespace {namespace}", "does not exist", DEPLOY)]
    level = (found["metadata"].get("labels") or {}).get(ENFORCE, "privileged")
    if level not in LEVELS or LEVELS.index(level) > LEVELS.index(PODS_MEET):
        return [Problem(f"Namespace {namespace} Pod Security ({ENFORCE}={level})",
                        f"admits none of this project's pods (they meet {PODS_MEET!r})",
                        f"kubectl label namespace {namespace} {ENFORCE}={PODS_MEET} --overwrite")]
    return []


def _check_volume(api: _Api, namespace: str, claim: str) -> list[Problem]:
    piece = f"PersistentVolumeClaim {namespace}/{claim} (recipe.cluster.checkpoint_volume)"
    pvc = api.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}")
    if pvc is None:
        return [Problem(piece, "does not exist", DEPLOY)]
    problems = []
    storage_class = pvc["spec"].get("storageClassName")
    if storage_class and api.get(f"/apis/storage.k8s.io/v1/storageclasses/{storage_class}") is None:
        problems.append(Problem(f"StorageClass {storage_class} (of {piece})", "does not exist",
                                "pick one of `kubectl get storageclass` that offers ReadWriteMany: set it in "
                                "manifests/overlays/gpu/storage.yaml (helm: --set storage.storageClassName=...,"
                                " checkpoints.storageClassName=...), then delete and re-apply the claim"))
    if "ReadWriteMany" not in (pvc["spec"].get("accessModes") or []):
        problems.append(Problem(piece, f"access modes {pvc['spec'].get('accessModes')}: the training stages "
                                "and every node of a TrainJob mount it at once, so it must be ReadWriteMany",
                                "a ReadWriteMany storage class (NFS, Filestore, EFS, CephFS) in "
                                "manifests/overlays/gpu/storage.yaml"))
    phase = (pvc.get("status") or {}).get("phase")
    if phase != "Bound":
        problems.append(Problem(piece, f"is {phase or 'not Bound'}: no volume provisioned for it",
                                f"kubectl -n {namespace} describe pvc {claim}  (the events say why)"))
    return problems


def _check_trainer(api: _Api) -> list[Problem]:
    problems = []
    if api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{TRAINER_CRD}") is None:
        problems.append(Problem(f"CustomResourceDefinition {TRAINER_CRD} (Kubeflow Trainer v2.3+)",
                                "is not installed: stages with nodes > 1 cannot start", TRAINER_INSTALL))
    runtime = f"/apis/{trainjob.GROUP}/{trainjob.VERSION}/clustertrainingruntimes/{trainjob.RUNTIME}"
    if api.get(runtime) is None:
        problems.append(Problem(f"ClusterTrainingRuntime {trainjob.RUNTIME}", "does not exist", RUNTIMES_INSTALL))
    return problems


def _check_nodes(api: _Api, recipe: Recipe) -> list[Problem]:
    """Nodes carrying each stage's selector with at least its GPUs allocatable, `nodes` of them."""
    wanted: dict[tuple, list[str]] = {}
    for stage in STAGES:
        res = getattr(recipe.cluster, stage)
        if res.gpus or res.node_selector:
            key = (tuple(sorted(res.node_selector.items())), res.accelerator, res.gpus, res.nodes)
            wanted.setdefault(key, []).append(stage)
    problems = []
    for (selector, accelerator, gpus, count), stages in wanted.items():
        labels = ",".join(f"{k}={v}" for k, v in selector)
        nodes = api.get("/api/v1/nodes", **({"labelSelector": labels} if labels else {}))["items"]
        fit = [n for n in nodes if int((n.get("status") or {}).get("allocatable", {}).get(accelerator, "0")) >= gpus]
        if len(fit) < count:
            need = f"{count} node(s)" + (f" labelled {labels}" if labels else "") + \
                (f" with {gpus} {accelerator} allocatable" if gpus else "")
            problems.append(Problem(
                f"node pool for {', '.join(stages)} (recipe.cluster.<stage>.node_selector, gpus, nodes)",
                f"needs {need}; found {len(fit)} of {len(nodes)} matching the labels",
                f"add such a node pool (and its GPU device plugin), or change recipe.cluster.{stages[0]}"))
    return problems


def check(recipe: Recipe, namespace: str, api_client, in_cluster: bool = False) -> list[Problem]:
    """Every problem the cluster has with `recipe`, in one pass (an empty list: ready to run). `in_cluster`:
    this process can reach cluster Services, so a Service that exists must also answer its health check."""
    api, problems = _Api(api_client), []
    checks = [(f"Namespace {namespace}", lambda: _check_namespace(api, namespace))]
    for name, (keys, stages) in _secrets(recipe).items():
        def secret(name=name, keys=sorted(keys), stages=stages):
            piece = f"Secret {namespace}/{name} (recipe.cluster.{stages[0]}.secrets)"
            found = api.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
            if found is None:
                return [Problem(piece, f"does not exist; {', '.join(stages)} read keys {', '.join(keys)}",
                                _secret_fix(namespace, name, keys))]
            lacking = [key for key in keys if key not in (found.get("data") or {})]
            return [Problem(piece, f"has no key {', '.join(lacking)}",
                            f"kubectl -n {namespace} delete secret {name}; " + _secret_fix(namespace, name, keys))
                    ] if lacking else []
        checks.append((f"Secret {namespace}/{name}", secret))
    if recipe.cluster.checkpoint_volume:
        checks.append(("checkpoint volume", lambda: _check_volume(api, namespace, recipe.cluster.checkpoint_volume)))
    if any(getattr(recipe.cluster, stage).nodes > 1 for stage in STAGES):
        checks.append(("Kubeflow Trainer", lambda: _check_trainer(api)))
    checks.append(("nodes", lambda: _check_nodes(api, recipe)))
    for url, field, health, deploy in (
            (recipe.sandbox.url, "recipe.sandbox.url", "/healthz", DEPLOY),
            (recipe.tracking.uri if recipe.tracking.backend == "mlflow" else None, "recipe.tracking.uri", "/health",
             "deploy an MLflow tracking server there (manifests/ deploy none), or set tracking.backend: none")):
        if url and _service(url):
            checks.append((field, lambda url=url, field=field, deploy=deploy: _check_service(api, url, field, deploy)))
        if url and url.startswith("http") and (in_cluster or not _service(url)):
            checks.append((field, lambda url=url, field=field, health=health: _check_http(url, field, health)))
    if urlparse(recipe.promote.registry).scheme not in ("", "file", "pvc"):
        checks.append(("registry", lambda: _check_bucket(recipe.promote.registry)))
    for piece, run_check in checks:
        try:
            problems += run_check()
        except _Forbidden as exc:
            problems.append(Problem(piece, f"this account may not read it ({exc})",
                                    f"{DEPLOY}: it grants the pipeline's account the read-only posttrain-preflight "
                                    "roles; from a laptop, use a kubeconfig that may read them"))
    return problems


def run(recipe: Recipe, namespace: str | None = None, api_client=None, log=print) -> None:
    """Check the cluster for `recipe`; raise PreflightFailed listing every problem. Without an `api_client` it is
    the pipeline's task: on a cluster the pipeline gives it its namespace (and it uses the pod's service
    account); kfp.local gives none, and a local run has no cluster to check."""
    in_cluster = api_client is None
    if in_cluster:
        from kubernetes import client, config

        if not os.environ.get(trainjob.NAMESPACE_ENV):
            log(f"preflight: not on a cluster ({trainjob.NAMESPACE_ENV} unset); nothing to check")
            return
        config.load_incluster_config()
        api_client = client.ApiClient()
    namespace = namespace or os.environ.get(trainjob.NAMESPACE_ENV) or DEFAULT_NAMESPACE
    problems = check(recipe, namespace, api_client, in_cluster=in_cluster)
    if problems:
        raise PreflightFailed(problems, namespace)
    log(f"preflight: namespace {namespace} has everything recipe {recipe.name} names")


def from_kubeconfig(kubeconfig: str | None = None, context: str | None = None):
    """(api client, the context's namespace or None) from the user's kubeconfig."""
    from kubernetes import client, config

    contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
    if context:
        active = next(c for c in contexts if c["name"] == context)
    api_client = config.new_client_from_config(config_file=kubeconfig, context=context)
    return api_client, (active.get("context") or {}).get("namespace")
