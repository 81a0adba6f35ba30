"""Multi-process training: a stage under torchrun (gloo on CPU) trains data-parallel, and rank 0 alone
writes the manifest; the DeepSpeed configs the recipe names."""
import json

import pytest

from posttrain.training.launch import processes, run_stage
from posttrain.recipe import load
from posttrain.stages import base, data
from posttrain.store import read_manifest
from posttrain.training.trainer import deepspeed_config

from conftest import ROOT

pytestmark = pytest.mark.slow  # a module of a minute or more: handed out first (conftest.py)


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
    assert processes(load(ROOT / "recipes" / "tiny.yaml").override(rlvr={"algorithm": "ppo"}), "rlvr") == 1


@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_deepspeed_configs_leave_batch_sizes_to_the_trainer(zero):
    config = deepspeed_config(zero)
    assert config["zero_optimization"]["stage"] == int(zero[-1])
    assert config["train_micro_batch_size_per_gpu"] == "auto" and config["bf16"] == {"enabled": "auto"}
    assert (zero == "zero3") == config["zero_optimization"].get("stage3_gather_16bit_weights_on_model_save", False)
    json.dumps(config)
    assert deepspeed_config("none") is None


def test_the_8b_recipe_shards_as_published_and_the_gpu_image_ships_deepspeed():
    recipe = load(ROOT / "recipes" / "tulu3-8b.yaml")
    # SFT and DPO under ZeRO-3 (open-instruct's Tülu 3 8B scripts), GRPO under ZeRO-2 (Tülu 3.1's)
    assert (recipe.sft.deepspeed, recipe.dpo.deepspeed, recipe.rlvr.deepspeed) == ("zero3", "zero3", "zero2")
    assert "\ndeepspeed==" in (ROOT / "images" / "gpu" / "requirements.lock").read_text()


def test_length_buckets_keep_rows_of_one_bucket_shuffled():
    import random
    from types import SimpleNamespace

    from datasets import Dataset

    from posttrain.training.trainer import bucketed

    class Base:
        def _get_train_sampler(self, train_dataset=None):
            return "random"

    rng = random.Random(0)
    lengths = [rng.randint(70, 110) for _ in range(900)] + [rng.randint(180, 250) for _ in range(100)]
    rng.shuffle(lengths)
    dataset = Dataset.from_dict({"input_ids": [[0] * n for n in lengths]})
    trainer = object.__new__(bucketed(Base, 64))
    trainer.args = SimpleNamespace(train_sampling_strategy="group_by_length", train_batch_size=20,
                                   gradient_accumulation_steps=1)
    order = list(trainer._get_train_sampler(dataset))
    batches = [[lengths[i] for i in order[k : k + 20]] for k in range(0, len(order), 20)]
    mixed = [b for b in batches if min(b) <= 128 < max(b)]
    # short and long rows only meet where a mega-batch's long rows run out: one batch per mega-batch
    # (transformers makes 1,000 rows of batch 20 into mega-batches of 12 x 20 = 240 rows, so 5)
    assert len(mixed) <= 5 and len(batches) == 50
    short = [b for b in batches if max(b) <= 128]
    assert sum(b != sorted(b, reverse=True) for b in short) > len(short) * 0.9  # not sorted by exact length
    trainer.args.train_sampling_strategy = "random"
    assert trainer._get_train_sampler(dataset) == "random"
    assert bucketed(Base, 0) is Base


def test_grpo_uses_vllm_only_where_it_can(micro_recipe, tmp_path):
    from posttrain.stages import rlvr

    assert rlvr.trainer_config(micro_recipe, tmp_path).use_vllm is False  # "auto" on a CPU machine
    with pytest.raises(RuntimeError, match="recipe.rlvr.vllm is on, but this machine has no GPU"):
        rlvr.trainer_config(micro_recipe.override(rlvr={"vllm": "on"}), tmp_path)
    eight_b = load(ROOT / "recipes" / "tulu3-8b.yaml")
    assert eight_b.rlvr.vllm == "auto" and eight_b.rlvr.vllm_mode == "colocate"
