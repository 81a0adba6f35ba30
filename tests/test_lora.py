"""LoRA adapters through the pipeline (issue 29): SFT -> DPO -> GRPO each training an adapter on the micro
settings, each output naming its base; eval scoring an adapter as its merged model; the registry entry
recording base and adapter digests; a mismatched base refused; a LoRA field where it cannot run refused;
a SIGKILLed LoRA DPO resumed from its checkpoint."""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from posttrain.recipe import RecipeError
from posttrain.stages import base, data, dpo, preference, promote, rlvr, sft
from posttrain.stages import eval as evaluate
from posttrain.store import read_manifest, seal
from posttrain.training import lora
from posttrain.training.trainer import MARKER, latest_complete

pytestmark = pytest.mark.slow  # a module of a minute or more: handed out first (conftest.py)

ADAPTER = {"rank": 4, "alpha": 8.0, "dropout": 0.0}


def served_by_fake_vllm(monkeypatch, paths) -> list[dict]:
    """generation.load on each path with vLLM wanted and a stand-in `vllm` module: the engine arguments and the
    LoRA request each generate call passes."""
    import types

    from posttrain import generation

    engines = []

    class LLM:
        def __init__(self, **kwargs):
            engines.append(kwargs)

        def generate(self, prompts, params, lora_request=None):
            engines[-1]["lora_request"] = lora_request
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text="")]) for _ in prompts]

    modules = {"vllm": types.SimpleNamespace(LLM=LLM, SamplingParams=lambda **kw: kw),
               "vllm.lora": types.SimpleNamespace(),
               "vllm.lora.request": types.SimpleNamespace(LoRARequest=lambda **kw: kw),
               "vllm.inputs": types.SimpleNamespace(TokensPrompt=lambda **kw: kw)}
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(generation, "vllm_wanted", lambda: True)
    monkeypatch.setattr(generation.torch.cuda, "device_count", lambda: 1)
    for path in paths:
        model, tokenizer = generation.load(str(path))
        generation.generate(model, tokenizer, [[{"role": "user", "content": "1 + 1?"}]], 4, 1)
        engines[-1].setdefault("lora_request", None)
    return engines


def test_sft_dpo_grpo_with_lora_adapters_name_their_base_score_as_merged_and_register(micro_recipe, tmp_path,
                                                                                        monkeypatch):
    recipe = micro_recipe.override(sft={"lora": ADAPTER}, dpo={"lora": ADAPTER}, rlvr={"lora": ADAPTER},
                                   promote={"min_accuracy": {}, "min_gain_over_base": -1.0,
                                            "registry": (tmp_path / "registry").as_uri(), "model_registry": "none"})
    data.run(recipe, tmp_path / "data")
    base.run(recipe, tmp_path / "data", tmp_path / "base")
    summaries = {"sft": sft.run(recipe, tmp_path / "base", tmp_path / "data", tmp_path / "sft")}
    preference.run(recipe, tmp_path / "sft", tmp_path / "data", tmp_path / "pairs")  # samples the merged SFT model
    summaries["dpo"] = dpo.run(recipe, tmp_path / "sft", tmp_path / "pairs", tmp_path / "dpo")
    summaries["rlvr"] = rlvr.run(recipe, tmp_path / "dpo", tmp_path / "data", tmp_path / "rlvr")

    root = read_manifest(tmp_path / "base")["sha256"]
    for stage, input_stage in [("sft", "base"), ("dpo", "sft"), ("rlvr", "dpo")]:
        out = tmp_path / stage
        assert lora.is_adapter(out) and (out / "adapter_model.safetensors").is_file()
        assert not (out / "model.safetensors").exists() and not (out / "ref").exists()  # no weights, no TRL ref copy
        named = lora.record(out)
        assert named["base"]["sha256"] == read_manifest(tmp_path / input_stage)["sha256"]
        assert named["base"]["stage"] == input_stage and named["root"]["sha256"] == root
        assert 0 < summaries[stage]["trainable_parameters"] < summaries[stage]["parameters"]
        assert summaries[stage]["peak_memory_mb"] > 0

    # The adapter scores exactly as its merged model, saved as full weights and sealed like a stage output.
    merged = lora.materialise(tmp_path / "rlvr", tmp_path / "merged")
    seal(merged, "merged", recipe.digest())
    scores = evaluate.run(recipe, tmp_path / "data", {"base": tmp_path / "base", "merged": merged,
                                                      "rlvr": tmp_path / "rlvr"}, tmp_path / "eval")
    for name, by_model in scores["benchmarks"].items():
        assert by_model["rlvr"]["outcomes"] == by_model["merged"]["outcomes"], name
        assert by_model["rlvr"]["samples"] == by_model["merged"]["samples"], name

    promote.decide(recipe, tmp_path / "eval", tmp_path / "gate")
    url = promote.register(recipe, tmp_path / "rlvr", tmp_path / "gate")
    entry = json.loads((tmp_path / "registry" / recipe.name / url.rsplit("/", 1)[1] / "entry.json").read_text())
    assert entry["adapter"]["base_sha256"] == read_manifest(tmp_path / "dpo")["sha256"]
    assert entry["adapter"]["adapter_sha256"] == read_manifest(tmp_path / "rlvr")["sha256"] == entry["model_sha256"]
    assert entry["adapter"]["root_sha256"] == root
    shown = subprocess.run([sys.executable, "-m", "posttrain.cli", "registry", "show", recipe.name, entry["version"],
                            "--registry", (tmp_path / "registry").as_uri()], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["adapter"] == entry["adapter"]
    assert f"needs its base {entry['adapter']['base_sha256']} (dpo output)" in shown.stderr

    # On a GPU with vLLM, an adapter on full weights is served as a LoRA request on its base's engine; a chain of
    # adapters is merged first (vLLM applies one). The requests, built against a stand-in vLLM module:
    assert lora.vllm_plan(tmp_path / "sft") == {
        "model": str(tmp_path / "base"), "merge": False, "max_lora_rank": 4,
        "lora": {"lora_name": "sft", "lora_int_id": 1, "lora_path": str(tmp_path / "sft")}}
    assert lora.vllm_plan(tmp_path / "dpo")["merge"] is True
    engines = served_by_fake_vllm(monkeypatch, [tmp_path / "sft", tmp_path / "dpo"])
    assert engines[0]["model"] == str(tmp_path / "base") and engines[0]["enable_lora"] is True
    assert engines[0]["lora_request"] == {"lora_name": "sft", "lora_int_id": 1, "lora_path": str(tmp_path / "sft")}
    assert "enable_lora" not in engines[1] and engines[1]["lora_request"] is None  # merged into full weights
    assert read_manifest(tmp_path / "base")["sha256"] == root  # ... and nothing was written into the base

    # An adapter only fits the weights it was trained on: another base, or a changed one, is refused.
    with pytest.raises(lora.AdapterBaseMismatch, match="trained on base"):
        lora.load_model(tmp_path / "rlvr", base=tmp_path / "sft")
    moved = shutil.copytree(tmp_path / "dpo", tmp_path / "dpo-moved")
    shutil.rmtree(tmp_path / "sft")  # the recorded base is gone
    with pytest.raises(lora.AdapterBaseMismatch, match="is not at"):
        lora.load_model(moved)


def test_on_a_cluster_a_task_fetches_the_base_its_input_adapter_names_from_the_artifact_store(
        micro_recipe, tmp_path, s3, monkeypatch):
    """A KFP task's pod holds only its own inputs, at `/s3/<bucket>/<key>` for `s3://<bucket>/<key>`: the DPO
    task gets the SFT adapter, whose recorded base (the base task's output) is not in its pod. The base is
    fetched from the store by that address, checked against the digest, and the adapter loads on it."""
    import fsspec
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from posttrain.models import tiny

    # A base and an adapter on it, as the base and SFT tasks leave them (the adapter's weights set at random: an
    # untrained LoRA adapter is zero, and merging it would change nothing)
    texts = ["The answer is 12.", "Answer in lowercase letters only.", "def add(a, b):\n    return a + b"] * 20
    tiny.build(texts, micro_recipe.model.tiny, tmp_path / "base", seed=7)
    seal(tmp_path / "base", "base", micro_recipe.digest())
    torch.manual_seed(0)
    adapter = get_peft_model(AutoModelForCausalLM.from_pretrained(tmp_path / "base"),
                             LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    for name, weight in adapter.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(weight, std=0.1)
    adapter.save_pretrained(tmp_path / "sft")
    AutoTokenizer.from_pretrained(tmp_path / "base").save_pretrained(tmp_path / "sft")
    lora.name_base(adapter, tmp_path / "sft", tmp_path / "base")
    seal(tmp_path / "sft", "sft", micro_recipe.digest())
    store = "posttrain/v2/artifacts/tulu3/run-1/base-task/model"  # where KFP put the base task's output
    fsspec.filesystem("s3").put(str(tmp_path / "base") + "/", f"s3://{store}", recursive=True)
    record = lora.record(tmp_path / "sft")
    record["base"]["path"] = f"/s3/{store}"  # as the SFT task recorded it: its pod's copy of the store object
    (tmp_path / "sft" / lora.ADAPTER).write_text(json.dumps(record))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "pod-tmp"))
    (tmp_path / "pod-tmp").mkdir()

    fetched = lora.base_dir(tmp_path / "sft")
    assert fetched.is_relative_to(tmp_path / "pod-tmp") and not os.path.exists(f"/s3/{store}")
    assert read_manifest(fetched)["sha256"] == record["base"]["sha256"]
    merged, local = lora.load_model(tmp_path / "sft"), lora.load_model(tmp_path / "sft", base=tmp_path / "base")
    assert all((a == b).all() for a, b in zip(merged.state_dict().values(), local.state_dict().values()))
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "base").state_dict()
    assert any((merged.state_dict()[k] != plain[k]).any() for k in plain)  # the adapter was merged in
    # ... and a store object that is not the recorded base is refused like any other mismatch
    fsspec.filesystem("s3").rm(f"s3://{store}", recursive=True)
    shutil.rmtree(fetched)
    fsspec.filesystem("s3").put(str(tmp_path / "sft") + "/", f"s3://{store}", recursive=True)
    with pytest.raises(lora.AdapterBaseMismatch, match="trained on base"):
        lora.base_dir(tmp_path / "sft")


@pytest.mark.parametrize("local, url", [
    ("/s3/bucket/run/base/model", "s3://bucket/run/base/model"),
    ("/gcs/bucket/run/base/model", "gs://bucket/run/base/model"),
    ("/minio/mlpipeline/v2/artifacts/model", "s3://mlpipeline/v2/artifacts/model"),  # KFP's MinIO speaks S3
    ("/tmp/run/base", None),  # a local run's output: where it was written
])
def test_the_store_address_of_a_kfp_task_input_path(local, url):
    from kfp.dsl.types.artifact_types import convert_local_path_to_remote_path

    assert lora.remote_url(local) == url
    if url:  # KFP's own mapping, MinIO read as S3
        assert convert_local_path_to_remote_path(local).replace("minio://", "s3://") == url


@pytest.mark.parametrize("overrides, field", [
    ({"rlvr": {"algorithm": "ppo", "lora": {}}}, "recipe.rlvr: lora: algorithm ppo"),
    ({"dpo": {"lora": {"rnak": 8}}}, "recipe.dpo.lora.rnak: unknown key"),
    ({"preference": {"lora": {}}}, "recipe.preference.lora: unknown key"),
    ({"sft": {"lora": {"quantize": "nf8"}}}, "recipe.sft.lora.quantize"),
])
def test_a_lora_field_where_it_cannot_be_used_is_refused_naming_it(micro_recipe, overrides, field):
    with pytest.raises(RecipeError, match=field.replace(".", r"\.")):
        micro_recipe.override(**overrides)


def test_qlora_on_a_machine_without_bitsandbytes_gpu_is_refused_naming_the_field(micro_recipe, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    recipe = micro_recipe.override(dpo={"lora": {"quantize": "nf4"}})
    with pytest.raises(RecipeError, match=r"recipe\.dpo\.lora\.quantize: nf4 needs bitsandbytes on a CUDA GPU"):
        lora.load_for_training(recipe, "dpo", tmp_path)


def test_sigkill_mid_lora_dpo_resumes_from_its_checkpoint(micro_recipe, tmp_path):
    from test_reliability import DPO_CHILD, _wait_for

    recipe = micro_recipe.override(dpo={"batch_size": 1, "epochs": 4, "checkpoints": {"every": 2, "keep": 2},
                                        "lora": ADAPTER})
    data.run(recipe, tmp_path / "data")
    base.run(recipe, tmp_path / "data", tmp_path / "base")
    sft.run(recipe, tmp_path / "base", tmp_path / "data", tmp_path / "sft")  # full SFT, then a LoRA DPO on it
    preference.run(recipe, tmp_path / "sft", tmp_path / "data", tmp_path / "pairs")
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(recipe.to_yaml())
    out = tmp_path / "dpo"
    with open(tmp_path / "child.log", "w") as log:
        child = subprocess.Popen([sys.executable, "-c", DPO_CHILD, str(recipe_file), str(tmp_path / "sft"),
                                  str(tmp_path / "pairs"), str(out)], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for(out / "trainer" / "checkpoint-4" / MARKER, child, timeout=600)  # slow to start on a loaded CPU
    except AssertionError:
        child.kill()
        raise AssertionError((tmp_path / "child.log").read_text()[-3000:]) from None
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    newest = latest_complete(out / "trainer")
    assert newest is not None and not (out / "manifest.json").exists()
    assert (newest / "adapter_model.safetensors").is_file()  # the checkpoint holds the adapter, not the weights

    summary = dpo.run(recipe, tmp_path / "sft", tmp_path / "pairs", out)
    assert summary["resumed_from"] == newest.name and summary["steps"] > int(newest.name.split("-")[1])
    assert lora.record(out)["base"]["sha256"] == read_manifest(tmp_path / "sft")["sha256"]
