"""`posttrain preflight` against a fake Kubernetes API on loopback (tests/fake_kube.py): a cluster with all that
recipes/tulu3-8b.yaml names passes; each missing piece is named, with its fix, and all of them at once."""
import pytest

from posttrain import cli, preflight
from posttrain.recipe import load

from conftest import ROOT
from fake_kube import FakeKubeApi, tulu3_cluster

pytest.importorskip("kubernetes")

NS = "/api/v1/namespaces/posttrain"


@pytest.fixture
def recipe(s3, monkeypatch):
    import boto3
    import fsspec.config

    # fsspec read FSSPEC_S3_ENDPOINT_URL into its config when first imported: an earlier test's server
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": s3})

    boto3.client("s3", endpoint_url=s3).create_bucket(Bucket="posttrain-registry")
    return load(ROOT / "recipes" / "tulu3-8b.yaml")  # its registry: s3://posttrain-registry, on moto


def _problems(recipe, objects, forbidden=frozenset()):
    fake = FakeKubeApi(objects, forbidden)
    try:
        return preflight.check(recipe, "posttrain", fake.client())
    finally:
        fake.close()


def test_a_cluster_with_everything_the_recipe_names_passes(recipe):
    assert _problems(recipe, tulu3_cluster()) == []


def _without(*paths):
    return lambda objects: [objects.pop(p) for p in paths]


def _set(path, *keys, value):
    def edit(objects):
        target = objects[path]
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = value
    return edit


def _fewer_gpus(objects):
    for node in range(8):
        objects[f"/api/v1/nodes/gpu-{node}"]["status"]["allocatable"]["nvidia.com/gpu"] = "4"


MISSING = {  # what is missing -> (edit of the complete cluster, the piece the error names, its fix)
    "namespace": (_without(NS), "Namespace posttrain", "kubectl apply -k manifests/overlays/gpu"),
    "pod-security-level": (_set(NS, "metadata", "labels", "pod-security.kubernetes.io/enforce", value="strict"),
                           "pod-security.kubernetes.io/enforce=strict",
                           "kubectl label namespace posttrain pod-security.kubernetes.io/enforce=restricted"),
    "judge-secret": (_without(f"{NS}/secrets/posttrain-judge-api-key"), "Secret posttrain/posttrain-judge-api-key",
                     "kubectl -n posttrain create secret generic posttrain-judge-api-key --from-literal=api_key="),
    "s3-secret-key": (_set(f"{NS}/secrets/posttrain-s3-credentials", "data", value={"access_key_id": "eA=="}),
                      "Secret posttrain/posttrain-s3-credentials",
                      "--from-literal=access_key_id=... --from-literal=secret_access_key=..."),
    "hf-secret": (_without(f"{NS}/secrets/posttrain-hf-token"), "Secret posttrain/posttrain-hf-token",
                  "create secret generic posttrain-hf-token --from-literal=token="),
    "checkpoint-pvc": (_without(f"{NS}/persistentvolumeclaims/posttrain-checkpoints"),
                       "PersistentVolumeClaim posttrain/posttrain-checkpoints", "kubectl apply -k manifests/overlays/gpu"),
    "pvc-unbound": (_set(f"{NS}/persistentvolumeclaims/posttrain-checkpoints", "status", "phase", value="Pending"),
                    "is Pending", "kubectl -n posttrain describe pvc posttrain-checkpoints"),
    "pvc-not-rwx": (_set(f"{NS}/persistentvolumeclaims/posttrain-checkpoints", "spec", "accessModes",
                         value=["ReadWriteOnce"]), "must be ReadWriteMany", "manifests/overlays/gpu/storage.yaml"),
    "storage-class": (_without("/apis/storage.k8s.io/v1/storageclasses/filestore-rwx"), "StorageClass filestore-rwx",
                      "manifests/overlays/gpu/storage.yaml"),
    "trainjob-crd": (_without("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/trainjobs.trainer.kubeflow.org"),
                     "CustomResourceDefinition trainjobs.trainer.kubeflow.org", "manifests/overlays/manager?ref=v2.3.0"),
    "training-runtime": (_without("/apis/trainer.kubeflow.org/v1alpha1/clustertrainingruntimes/torch-distributed"),
                         "ClusterTrainingRuntime torch-distributed", "manifests/overlays/runtimes?ref=v2.3.0"),
    "gpu-nodes": (_without(*(f"/api/v1/nodes/gpu-{n}" for n in range(4, 8))),
                  "node pool for sft (recipe.cluster.<stage>.node_selector, gpus, nodes): needs 8 node(s) labelled "
                  "cloud.google.com/gke-accelerator=nvidia-h100-80gb with 8 nvidia.com/gpu allocatable; found 4",
                  "add such a node pool"),
    # 4 GPUs a node: sft (8 nodes) and preference, dpo, rlvr (1 node) need 8 each; eval's 1 fits
    "gpus-per-node": (_fewer_gpus, "with 8 nvidia.com/gpu allocatable; found 0 of 8", "add such a node pool"),
    "sandbox-service": (_without(f"{NS}/services/posttrain-sandbox"), "Service posttrain/posttrain-sandbox",
                        "kubectl apply -k manifests/overlays/gpu"),
    "sandbox-pods": (_set(f"{NS}/endpoints/posttrain-sandbox", "subsets", value=[]), "has no ready pod",
                     "kubectl -n posttrain describe service posttrain-sandbox"),
    "mlflow": (_without("/api/v1/namespaces/mlflow/services/mlflow"), "Service mlflow/mlflow (recipe.tracking.uri",
               "deploy an MLflow tracking server"),
}


@pytest.mark.parametrize("missing", MISSING)
def test_each_missing_piece_is_named_with_its_fix(recipe, missing):
    edit, piece, fix = MISSING[missing]
    objects = tulu3_cluster()
    edit(objects)
    problems = _problems(recipe, objects)
    assert problems, missing
    for problem in problems:  # one, or one per stage group it concerns
        assert piece in str(problem) and fix in problem.fix, str(problem)
    assert len(problems) == (2 if missing == "gpus-per-node" else 1), [str(p) for p in problems]


def test_a_registry_bucket_that_is_not_writable_is_named(recipe):
    problems = _problems(recipe.override(promote={"registry": "s3://no-such-bucket/models"}), tulu3_cluster())
    assert [p.piece for p in problems] == ["registry bucket s3://no-such-bucket/models (recipe.promote.registry)"]
    assert "NoSuchBucket" in problems[0].what or "not writable" in problems[0].what


def test_an_object_the_account_may_not_read_is_named_with_the_role_that_grants_it(recipe):
    problems = _problems(recipe, tulu3_cluster(), forbidden={f"{NS}/secrets/posttrain-hf-token"})
    assert [p.piece for p in problems] == ["Secret posttrain/posttrain-hf-token"]
    assert "may not read" in problems[0].what and "posttrain-preflight" in problems[0].fix


def test_every_missing_piece_is_reported_at_once(recipe):
    problems = _problems(recipe, {})
    named = "\n".join(p.piece for p in problems)
    for piece in ("Namespace posttrain", "posttrain-hf-token", "posttrain-judge-api-key", "posttrain-s3-credentials",
                  "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterTrainingRuntime", "node pool",
                  "posttrain-sandbox", "mlflow/mlflow"):
        assert piece in named, piece


def test_the_command_exits_nonzero_listing_every_problem(recipe, tmp_path, capsys):
    objects = tulu3_cluster()
    objects.pop(f"{NS}/secrets/posttrain-judge-api-key")
    objects.pop("/apis/storage.k8s.io/v1/storageclasses/filestore-rwx")
    fake = FakeKubeApi(objects)
    config = fake.kubeconfig(tmp_path / "kubeconfig")
    recipe_path = ROOT / "recipes" / "tulu3-8b.yaml"
    assert cli.main(["preflight", str(recipe_path), "--kubeconfig", str(config)]) == 1
    err = capsys.readouterr().err
    assert "2 missing" in err and "posttrain-judge-api-key" in err and "StorageClass filestore-rwx" in err
    fake.objects = tulu3_cluster()
    assert cli.main(["preflight", str(recipe_path), "--kubeconfig", str(config)]) == 0
    assert "has everything" in capsys.readouterr().out
    fake.close()


def test_outside_a_cluster_the_pipeline_task_has_nothing_to_check(monkeypatch, capsys):
    from posttrain.training.trainjob import NAMESPACE_ENV

    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")  # e.g. kfp.local in a notebook pod
    monkeypatch.delenv(NAMESPACE_ENV, raising=False)  # which only the compiled pipeline sets
    preflight.run(load(ROOT / "recipes" / "tiny.yaml"))
    assert "not on a cluster" in capsys.readouterr().out


def test_the_pipeline_runs_preflight_first_and_every_task_as_the_images_user():
    import yaml

    from posttrain.pipelines.tulu3 import IR
    from posttrain.training.trainjob import NAMESPACE_ENV, RUN_AS

    pipeline, platform = list(yaml.safe_load_all(IR.read_text()))[:2]
    tasks = pipeline["root"]["dag"]["tasks"]
    first = ("plan", "preflight")  # the two checks every other task waits for
    assert all(tasks[name].get("dependentTasks") is None for name in first)
    for name, task in tasks.items():
        if name not in first and name != "views":
            assert set(first) <= set(task.get("dependentTasks", [])), name
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name, executor in executors.items():
        assert executor["securityContext"] == {"runAsNonRoot": True, "runAsUser": str(RUN_AS),
                                               "runAsGroup": str(RUN_AS)}, name
    fields = {f["name"]: f["fieldPath"] for f in executors["exec-preflight"]["fieldPathAsEnv"]}
    assert fields[NAMESPACE_ENV] == "metadata.namespace"
    credentials = executors["exec-preflight"]["secretAsEnv"]  # the bucket probe writes as promote does
    assert {c["secretName"] for c in credentials} == {"posttrain-s3-credentials"} and all(c["optional"] for c in credentials)


def test_inside_the_cluster_a_service_must_also_answer(recipe):
    """The pipeline's task reaches Services: one that exists but does not answer is named (here the cluster's
    DNS names do not resolve); a tracking server that answers its /health passes."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    tracker = HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=tracker.serve_forever, daemon=True).start()
    recipe = recipe.override(tracking={"uri": f"http://127.0.0.1:{tracker.server_port}"})
    fake = FakeKubeApi(tulu3_cluster())
    problems = preflight.check(recipe, "posttrain", fake.client(), in_cluster=True)
    fake.close()
    tracker.shutdown()
    assert [p.piece for p in problems] == ["recipe.sandbox.url: http://posttrain-sandbox.posttrain.svc:8080"]
    assert "does not answer /healthz" in problems[0].what
