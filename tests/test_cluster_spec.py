"""The compiled production pipeline asks the cluster for what the recipe says, and holds no secret values."""
import yaml

from posttrain.pipelines import tulu3
from posttrain.recipe import load

from conftest import ROOT

GPU_STAGES = ("sft", "preference", "dpo", "rlvr", "eval")


def _compile(tmp_path, monkeypatch):
    # Plant secret values where a careless compile could pick them up: the environment.
    for name in ("HF_TOKEN", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, f"planted-{name.lower()}-value")
    recipe = load(ROOT / "recipes" / "tulu3-8b.yaml")
    text = tulu3.compile(recipe, tmp_path / "ir.yaml").read_text()
    pipeline, platform = yaml.safe_load_all(text)  # valid YAML, two documents
    return recipe, text, pipeline, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_every_gpu_stage_requests_accelerators_node_pool_and_tolerations(tmp_path, monkeypatch):
    recipe, _, pipeline, executors = _compile(tmp_path, monkeypatch)
    asked = [stage for stage in GPU_STAGES if getattr(recipe.cluster, stage).gpus]
    assert "sft" in asked and "preference" not in asked  # the 8B recipe's preference stage splits released pairs
    for stage in GPU_STAGES:
        wanted = getattr(recipe.cluster, stage)
        container = pipeline["deploymentSpec"]["executors"][f"exec-{stage}"]["container"]
        if not wanted.gpus:  # no GPU, no accelerator pool
            assert "accelerator" not in container.get("resources", {})
            continue
        if wanted.nodes > 1:  # a TrainJob launcher: tests/test_trainjob.py, test_multi_node_stage_... below
            continue
        accelerator = container["resources"]["accelerator"]
        assert (accelerator["resourceType"], int(accelerator["resourceCount"])) == (wanted.accelerator, wanted.gpus)
        platform = executors[f"exec-{stage}"]
        assert platform["nodeSelector"]["labels"] == wanted.node_selector != {}
        assert platform["tolerations"] == [t.model_dump(exclude_none=True) for t in wanted.tolerations] != []
        assert {"mountPath": "/dev/shm", "medium": "Memory"}.items() <= platform["emptyDirMounts"][0].items()
        assert int(platform["activeDeadlineSeconds"]) == wanted.timeout_s > 0


def test_secrets_are_referenced_by_name_only(tmp_path, monkeypatch):
    recipe, text, _, executors = _compile(tmp_path, monkeypatch)
    assert "planted-" not in text
    sft = executors["exec-sft"]["secretAsEnv"]
    assert sft[0]["secretName"] == "posttrain-hf-token"
    assert sft[0]["keyToEnv"] == [{"secretKey": "token", "envVar": "HF_TOKEN"}]


def test_gpu_counts_outside_what_kfp_accepts_are_refused():
    import pytest

    from posttrain.recipe import RecipeError, Recipe

    with pytest.raises(RecipeError, match=r"recipe\.cluster\.sft\.gpus"):
        Recipe(name="x").override(cluster={"sft": {"gpus": 3}})


def test_eval_gate_and_promote_never_use_the_cache(tmp_path, monkeypatch):
    _, _, pipeline, _ = _compile(tmp_path, monkeypatch)
    tasks = pipeline["root"]["dag"]["tasks"]
    [condition] = [name for name in tasks if name.startswith("condition-")]
    inner = pipeline["components"][tasks[condition]["componentRef"]["name"]]["dag"]["tasks"]["promote"]
    for task in (tasks["eval"], tasks["gate"], inner):
        assert not task["cachingOptions"].get("enableCache", False)
    assert tasks["sft"]["cachingOptions"]["enableCache"]  # training stays cacheable: inputs are run-specific


def test_every_training_stage_mounts_the_checkpoint_volume(tmp_path, monkeypatch):
    """Issue 18: checkpoints outlive the pod, so a KFP retry resumes."""
    from posttrain.training.checkpoints import ENV

    recipe, _, pipeline, executors = _compile(tmp_path, monkeypatch)
    assert recipe.cluster.checkpoint_volume == "posttrain-checkpoints"
    for stage in ("sft", "dpo", "rlvr"):
        [mount] = executors[f"exec-{stage}"]["pvcMount"]
        assert (mount["pvcNameParameter"]["runtimeValue"]["constant"], mount["mountPath"]) == \
            ("posttrain-checkpoints", "/mnt/checkpoints")
        env = pipeline["deploymentSpec"]["executors"][f"exec-{stage}"]["container"]["env"]
        assert {"name": ENV, "value": "/mnt/checkpoints"} in env
        assert getattr(recipe.cluster, stage).retries > 0  # a retry has something to resume
    for stage in ("data", "base", "preference", "eval", "gate"):
        assert "pvcMount" not in executors.get(f"exec-{stage}", {})


def test_multi_node_stage_launches_a_trainjob_from_a_small_pod(tmp_path, monkeypatch):
    from posttrain.training.trainjob import IMAGE_ENV, NAMESPACE_ENV

    recipe, _, pipeline, executors = _compile(tmp_path, monkeypatch)
    assert recipe.cluster.sft.nodes == 8 and recipe.cluster.sft.gpus == 8  # Tülu 3 8B SFT: 8 nodes x 8 GPUs
    container = pipeline["deploymentSpec"]["executors"]["exec-sft"]["container"]
    assert "accelerator" not in container.get("resources", {})  # the GPUs are the TrainJob's, not the launcher's
    assert {"name": IMAGE_ENV, "value": "ghcr.io/posttrain/sft:0.1.0"} in container["env"]
    assert {"name": NAMESPACE_ENV, "fieldPath": "metadata.namespace"} in executors["exec-sft"]["fieldPathAsEnv"]
    assert "nodeSelector" not in executors["exec-sft"]
    assert int(executors["exec-sft"]["activeDeadlineSeconds"]) == recipe.cluster.sft.timeout_s
    for stage in ("dpo", "rlvr"):  # one node each: torchrun in the pod, as before
        assert getattr(recipe.cluster, stage).nodes == 1
        assert pipeline["deploymentSpec"]["executors"][f"exec-{stage}"]["container"]["resources"]["accelerator"]
