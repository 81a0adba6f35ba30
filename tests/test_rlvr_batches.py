"""RLVR batch sizes: global in the recipe, per device in the trainer; an indivisible setting is refused."""
from pathlib import Path
from types import SimpleNamespace

import pytest

from posttrain.recipe import RecipeError, load
from posttrain.training.rlvr_batches import cluster_world, derive

ROOT = Path(__file__).resolve().parents[1]


def test_the_8b_recipe_follows_tulu_3_1_grpo():
    recipe = load(ROOT / "recipes" / "tulu3-8b.yaml")
    batches = derive(recipe.rlvr, cluster_world(recipe.cluster.rlvr))
    # grpo_fast_8b.sh: 48 prompts x 16 samples = 768 completions per rollout, num_mini_batches 2
    assert (batches.prompts_per_rollout, batches.completions_per_rollout) == (48, 768)
    assert (batches.completions_per_update, batches.updates_per_rollout) == (384, 2)
    assert batches.per_device * batches.world * batches.gradient_accumulation_steps == 384


def test_per_device_sizes_come_from_gpus_times_nodes():
    recipe = load(ROOT / "recipes" / "tulu3-8b.yaml")
    two_nodes = SimpleNamespace(gpus=8, nodes=2)
    # the recipe's 48 micro-steps of one completion on 8 GPUs become 24 on 16: the same global batch
    batches = derive(recipe.rlvr.model_copy(update={"gradient_accumulation_steps": 24}), cluster_world(two_nodes))
    assert batches.world == 16 and batches.per_device * 16 * batches.gradient_accumulation_steps == 384
    assert cluster_world(SimpleNamespace(gpus=0)) == 1  # a CPU pod, and a spec without nodes: one process


def test_an_indivisible_setting_is_refused_naming_the_fields():
    recipe = load(ROOT / "recipes" / "tulu3-8b.yaml")
    with pytest.raises(RecipeError, match=r"recipe.rlvr.batch_size 400 .* not divisible by 8 processes "
                                          r"\(recipe.cluster.rlvr.gpus x nodes\)"):
        recipe.override(rlvr={"batch_size": 400, "prompts_per_rollout": 50})
    with pytest.raises(RecipeError, match=r"recipe.rlvr.prompts_per_rollout 40 x recipe.rlvr.num_generations 16 = "
                                          r"640 .* not a multiple of recipe.rlvr.batch_size 384"):
        recipe.override(rlvr={"prompts_per_rollout": 40})
    with pytest.raises(RecipeError, match="recipe.rlvr.gradient_accumulation_steps 5"):
        recipe.override(rlvr={"gradient_accumulation_steps": 5})


def test_one_process_keeps_the_tiny_recipes_batches(micro_recipe, tmp_path):
    from posttrain.stages.rlvr import trainer_config

    args = trainer_config(micro_recipe, tmp_path)
    assert args.per_device_train_batch_size == micro_recipe.rlvr.batch_size == 16
    assert args.gradient_accumulation_steps == 1 and args.steps_per_generation == 1
    assert args.generation_batch_size == 16
