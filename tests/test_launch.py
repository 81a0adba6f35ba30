"""Multi-process training: a stage under torchrun (gloo on CPU) trains data-parallel, and rank 0 alone
writes the manifest; the DeepSpeed configs the recipe names."""
import json

import pytest

from posttrain.launch import processes, run_stage
from posttrain.recipe import load
from posttrain.stages import base, data
from posttrain.store import read_manifest
from posttrain.training import deepspeed_config

from conftest import ROOT


def test_sft_trains_data_parallel_on_two_processes(tmp_path, micro_recipe, monkeypatch):
    data.run(micro_recipe, tmp_path / "data")
    base.run(micro_recipe, tmp_path / "data", tmp_path / "base")
    monkeypatch.setenv("POSTTRAIN_NPROC", "1")
    single = run_stage("sft", micro_recipe, tmp_path / "base", tmp_path / "data", tmp_path / "one")
    monkeypatch.setenv("POSTTRAIN_NPROC", "2")
    double = run_stage("sft", micro_recipe, tmp_path / "base", tmp_path / "data", tmp_path / "two")
    rows = single["rows"]
    batch = micro_recipe.sft.batch_size
    assert single["steps"] == -(-rows // batch)  # one epoch
    assert double["steps"] == -(-rows // (2 * batch))  # the same epoch, split over two processes
    manifest = read_manifest(tmp_path / "two")
    assert manifest["stage"] == "sft" and {"model.safetensors", "tokenizer.json"} <= set(manifest["files"])
    assert not list((tmp_path / "two").glob("manifest*.tmp"))


def test_processes_follow_the_visible_gpus_and_ppo_stays_in_one(micro_recipe, monkeypatch):
    monkeypatch.delenv("POSTTRAIN_NPROC", raising=False)
    recipe = load(ROOT / "recipes" / "tulu3-8b.yaml")
    assert recipe.cluster.sft.gpus == 8 and processes(recipe, "sft") == 1  # no GPU here: one process
    monkeypatch.setenv("POSTTRAIN_NPROC", "4")
    assert processes(recipe, "sft") == 4 and processes(recipe, "preference") == 1
    assert processes(recipe.override(rlvr={"algorithm": "ppo"}), "rlvr") == 1


@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_deepspeed_configs_leave_batch_sizes_to_the_trainer(zero):
    config = deepspeed_config(zero)
    assert config["zero_optimization"]["stage"] == int(zero[-1])
    assert config["train_micro_batch_size_per_gpu"] == "auto" and config["bf16"] == {"enabled": "auto"}
    assert (zero == "zero3") == config["zero_optimization"].get("stage3_gather_16bit_weights_on_model_save", False)
    json.dumps(config)
    assert deepspeed_config("none") is None


def test_the_8b_recipe_shards_with_zero3_and_the_gpu_image_ships_deepspeed():
    recipe = load(ROOT / "recipes" / "tulu3-8b.yaml")
    assert recipe.sft.deepspeed == recipe.dpo.deepspeed == recipe.rlvr.deepspeed == "zero3"
    assert "deepspeed==" in (ROOT / "images" / "gpu" / "requirements-gpu.txt").read_text()
