"""posttrain plan: the 8B recipe fits stage by stage; the recipe as it was is refused on the DPO margin pass and
GRPO's vLLM, naming the fields; 70B on one node is refused and on 8 nodes fits; published reference points."""
from pathlib import Path

import pytest

from posttrain import plan
from posttrain.cli import main
from posttrain.plan.memory import GiB, model_states
from posttrain.recipe import RecipeError, load

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "tulu3-8b.yaml"


@pytest.fixture(scope="module")
def tulu():
    return load(RECIPE)


def test_the_8b_recipe_fits_and_the_command_exits_0(capsys):
    assert main(["plan", str(RECIPE)]) == 0
    out = capsys.readouterr().out
    for stage in ("sft", "dpo", "rlvr", "eval"):
        assert f"| {stage} |" in out
    assert "**no**" not in out


def test_the_recipe_as_it_was_is_refused_naming_the_margin_pass_and_vllm(capsys):
    before = load(ROOT / "tests" / "fixtures" / "tulu3-8b-before-plan.yaml")
    problems = "\n".join(plan.make(before).problems)
    assert "dpo: margin pass" in problems and "recipe.dpo.margin_batch_size" in problems
    assert "GRPO's vLLM" in problems and "131072-token" in problems
    assert "recipe.rlvr.vllm_max_model_length" in problems
    assert "of 80 per GPU" in problems  # the numbers
    with pytest.raises(plan.PlanError, match="recipe.dpo.margin_batch_size"):
        plan.check(before)
    assert main(["plan", str(ROOT / "tests" / "fixtures" / "tulu3-8b-before-plan.yaml")]) == 1
    assert "does not fit" in capsys.readouterr().err


def test_an_8b_full_fine_tune_at_4096_on_8_gpus_with_zero3_fits(tulu):
    # Tülu 3 ran its 8B DPO (and smaller SFT runs) on one node of 8 x 80 GB with ZeRO-3
    one_node = tulu.override(cluster={"sft": {**tulu.cluster.sft.model_dump(), "nodes": 1}})
    sft = next(s for s in plan.make(one_node).stages if s.stage == "sft")
    assert not sft.problems and sft.memory.peak.total + sft.memory.headroom < 80 * GiB


def test_70b_on_the_same_node_pool_is_refused_and_fits_on_8_nodes(tulu):
    def sft(nodes):
        recipe = tulu.override(model={"base": "meta-llama/Llama-3.1-70B"},
                               cluster={"sft": {**tulu.cluster.sft.model_dump(), "nodes": nodes}})
        return next(s for s in plan.make(recipe).stages if s.stage == "sft")

    one = sft(1)
    assert one.problems and "recipe.cluster.sft.nodes" in one.problems[0] and "optimizer" in one.problems[0]
    assert not sft(8).problems


def test_ppo_at_8b_is_refused_with_the_reason(tulu):
    from posttrain.recipe.sections import GRPO_ONLY, RLVRSection

    grpo_only_at_defaults = {name: RLVRSection.model_fields[name].default for name in GRPO_ONLY}
    ppo = tulu.override(rlvr={**grpo_only_at_defaults, "algorithm": "ppo", "batch_size": 192})
    problems = [p for p in plan.make(ppo).problems if p.startswith("rlvr")]
    assert problems and "one process, one GPU" in problems[0] and "recipe.rlvr.algorithm" in problems[0]


def test_zero_states_match_deepspeeds_published_table():
    # DeepSpeed docs, "Memory Requirements" (estimate_zero3_model_states_mem_needs_all_cold): a 2851M-parameter
    # model with a 32M largest layer on 1 node x 8 GPUs needs 6.10 GB per GPU without offload.
    class Arch:
        parameters, largest_layer = 2851e6, 32e6

    assert sum(model_states(Arch, "zero3", 8).values()) / GiB == pytest.approx(6.10, abs=0.02)


def test_zero_states_equal_deepspeeds_estimators():
    # DeepSpeed is a GPU-image package (images/gpu's lock; its sdist builds against a CUDA toolkit), not in the
    # CPU/test lock: this runs where DeepSpeed is installed (the GPU image).
    try:
        import deepspeed.runtime.zero.stage3 as stage3
    except ImportError:
        pytest.skip("needs a GPU image: DeepSpeed is installed there, not in the CPU/test environment")
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    class Arch:
        parameters, largest_layer = 8_030_261_248, 525_336_576

    _, gpu3, _ = stage3.estimate_zero3_model_states_mem_needs(Arch.parameters, Arch.largest_layer, 8, 1,
                                                               cpu_offload=False)
    _, gpu2 = estimate_zero2_model_states_mem_needs(Arch.parameters, 8, 1, cpu_offload=False)
    assert sum(model_states(Arch, "zero3", 8).values()) == pytest.approx(gpu3, rel=1e-6)
    assert sum(model_states(Arch, "zero2", 8).values()) == pytest.approx(gpu2, rel=1e-6)


def test_a_model_the_plan_cannot_find_names_recipe_model_base(tulu):
    with pytest.raises(RecipeError, match="recipe.model.base"):
        plan.make(tulu.override(model={"base": "someone/unknown-7b"}))


def test_cpu_recipes_are_planned_without_building_anything():
    tiny = load(ROOT / "recipes" / "tiny.yaml")
    result = plan.check(tiny)
    assert result.parameters == 0 and all(s.memory is None for s in result.stages)
