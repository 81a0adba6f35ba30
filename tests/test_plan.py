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


def test_the_one_gpu_recipe_fits_with_its_adapters_and_without_them_is_refused(tulu, capsys):
    one_gpu = ROOT / "recipes" / "tulu3-8b-1gpu.yaml"
    assert main(["plan", str(one_gpu)]) == 0, capsys.readouterr().out
    recipe = load(one_gpu)
    stages = {s.stage: s for s in plan.make(recipe).stages}
    arch = plan.architecture.architecture(recipe)
    # rank 64 on every projection of Llama-3.1-8B: 64 x (in + out) per layer's 7 linear layers, 32 layers
    c = arch.config
    h, kv, i = c["hidden_size"], c["num_key_value_heads"] * c["hidden_size"] // c["num_attention_heads"], \
        c["intermediate_size"]
    adapter = 32 * 64 * (2 * (h + h) + 2 * (h + kv) + 2 * (h + i) + (i + h))
    assert arch.adapter_parameters(64, "all-linear") == adapter == 167_772_160
    sft, dpo, rlvr = (stages[s].memory.peak.parts for s in ("sft", "dpo", "rlvr"))
    # QLoRA: the linear layers in NF4, embeddings and head upcast to fp32, the adapter in fp32
    assert sft["weights"] == pytest.approx(0.516 * arch.linear_parameters + 4 * (arch.parameters -
                                                                                 arch.linear_parameters) + 4 * adapter,
                                           rel=1e-3)
    assert sft["optimizer"] == 8 * adapter and sft["gradients"] == 4 * adapter
    assert dpo["weights"] == 2 * arch.parameters + 4 * adapter  # LoRA on bf16 weights
    assert not rlvr.get("reference")  # GRPO's KL term: the adapter switched off, no copy
    # The same recipe without its adapters trains all 8B weights on one GPU: refused, naming the stages
    full = recipe.override(sft={"lora": None}, dpo={"lora": None}, rlvr={"lora": None})
    refused = "\n".join(plan.make(full).problems)
    assert all(f"{stage}: training step" in refused for stage in ("sft", "dpo", "rlvr"))
    assert stages["sft"].compute.checkpoint_bytes == 12 * adapter  # the adapter and its Adam moments


def test_the_plans_adapter_size_is_what_peft_trains():
    import torch
    from peft import LoraConfig, get_peft_model

    from posttrain.plan.architecture import Architecture, _count, build

    config = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 128, "max_position_embeddings": 64}
    import json

    total, largest, linears = _count(json.dumps(config, sort_keys=True))
    arch = Architecture("small", config, total, largest, linears)
    for targets in ("all-linear", ("q_proj", "v_proj"), ("down_proj",)):
        torch.manual_seed(0)
        model = get_peft_model(build(config), LoraConfig(r=8, target_modules=targets if targets == "all-linear"
                                                         else list(targets), task_type="CAUSAL_LM"))
        trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert arch.adapter_parameters(8, targets) == trained, targets
