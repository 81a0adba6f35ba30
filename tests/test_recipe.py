import pydantic
import pytest
import yaml

from posttrain.recipe import Recipe, RecipeError, load, loads, shipped

from conftest import ROOT

RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


def test_recipes_ship():
    assert {p.name for p in RECIPES} >= {"tiny.yaml", "tulu3-8b.yaml"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_validates(path):
    recipe = load(path)
    assert recipe.name == path.stem
    # The resolved recipe round-trips through YAML unchanged (what the pipeline parameter carries).
    assert loads(recipe.to_yaml()) == recipe


def test_tulu3_recipe_has_the_paper_hyperparameters():
    recipe = load(ROOT / "recipes" / "tulu3-8b.yaml")
    assert recipe.sft.learning_rate == 5e-6 and recipe.sft.epochs == 2 and recipe.sft.max_length == 4096
    gpus = recipe.cluster.sft.gpus * recipe.cluster.sft.nodes  # 8 nodes x 8 GPUs, as published
    assert recipe.sft.warmup == 0.03 and recipe.sft.batch_size * recipe.sft.gradient_accumulation_steps * gpus == 128
    assert (recipe.dpo.beta, recipe.dpo.learning_rate, recipe.dpo.loss_type) == (5.0, 5e-7, "sigmoid_norm")


def _tiny_with(section: str, **values) -> str:
    data = yaml.safe_load((ROOT / "recipes" / "tiny.yaml").read_text())
    data[section].update(values)
    return yaml.safe_dump(data)


def test_unknown_key_names_the_field():
    with pytest.raises(RecipeError, match=r"recipe\.sft\.learnig_rate: unknown key"):
        loads(_tiny_with("sft", learnig_rate=1e-3))


def test_unknown_section_names_the_field():
    with pytest.raises(RecipeError, match=r"recipe\.trainer: unknown key"):
        loads("name: x\ntrainer: {}\n")


def test_negative_learning_rate_names_the_field():
    with pytest.raises(RecipeError, match=r"recipe\.sft\.learning_rate: .*greater than 0.*-0\.001"):
        loads(_tiny_with("sft", learning_rate=-1e-3))


def test_bad_enum_and_cross_field_checks_name_the_field():
    with pytest.raises(RecipeError, match=r"recipe\.dpo\.loss_type"):
        loads(_tiny_with("dpo", loss_type="sigmoidd"))
    with pytest.raises(RecipeError, match=r"recipe\.rlvr: .*not a multiple of num_generations"):
        loads(_tiny_with("rlvr", batch_size=60))
    with pytest.raises(RecipeError, match=r"recipe\.rlvr: warmup needs lr_scheduler"):
        loads(_tiny_with("rlvr", warmup=10, lr_scheduler="constant"))
    with pytest.raises(RecipeError, match=r"recipe\.promote: min_accuracy\.arithmetic must be within"):
        loads(_tiny_with("promote", min_accuracy={"arithmetic": 25}))
    with pytest.raises(RecipeError, match=r"recipe\.eval\.limit\.humaneal\.\[key\]: Input should be 'arithmetic'"):
        loads(_tiny_with("eval", limit={"humaneal": 10}))
    with pytest.raises(RecipeError, match=r"recipe\.eval\.limit\.humaneval: .*greater than or equal to 1.*, got 0"):
        loads(_tiny_with("eval", limit={"humaneval": 0}))
    assert loads(_tiny_with("eval", limit={"gsm8k": 10})).eval.limit == {"gsm8k": 10}  # not scored here: ignored


@pytest.mark.parametrize("algorithm, field, value", [
    ("ppo", "num_generations", 4), ("ppo", "vllm_gpu_memory_utilization", 0.5), ("ppo", "deepspeed", "zero2"),
    ("grpo", "gamma", 0.9), ("grpo", "value_coef", 0.1), ("grpo", "ppo_epochs", 4),
])
def test_a_field_only_the_other_rl_algorithm_reads_is_refused_by_name(algorithm, field, value):
    other = "grpo" if algorithm == "ppo" else "ppo"
    with pytest.raises(RecipeError, match=rf"recipe\.rlvr: {field} is set to .*only algorithm {other} reads it"):
        loads(f"name: x\nrlvr: {{algorithm: {algorithm}, {field}: {value}}}\n")
    loads(f"name: x\nrlvr: {{algorithm: {other}, {field}: {value}}}\n")  # where it is read, it is welcome


def test_not_a_mapping_and_bad_yaml_are_clear(tmp_path):
    with pytest.raises(RecipeError, match="a recipe is a mapping"):
        loads("- 1\n- 2\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        loads("name: [unclosed\n")
    with pytest.raises(RecipeError, match="cannot read recipe"):
        load(tmp_path / "missing.yaml")


def test_recipe_is_frozen_and_override_revalidates():
    recipe = Recipe(name="x")
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        recipe.sft.learning_rate = 1.0  # type: ignore[misc]
    assert recipe.override(sft={"epochs": 3}).sft.epochs == 3
    with pytest.raises(RecipeError, match=r"recipe\.sft\.epochs"):
        recipe.override(sft={"epochs": 0})


def test_the_run_seed_changes_every_sections_seed_and_zero_keeps_them():
    recipe = load(ROOT / "recipes" / "tiny.yaml")
    sections = ("data", "model", "sft", "preference", "dpo", "rlvr")
    assert [recipe.seed_for(s) for s in sections] == [getattr(getattr(recipe, s), "seed", 0) for s in sections]
    one, two = (recipe.model_validate({**recipe.model_dump(), "seed": seed}) for seed in (1, 2))
    for section in sections:
        assert one.seed_for(section) != two.seed_for(section) != recipe.seed_for(section)
    assert len({one.seed_for(s) for s in sections}) == len(sections)  # stages do not share a stream
    assert one.digest() != recipe.digest()


@pytest.mark.parametrize("section", ["sft", "dpo", "rlvr"])
def test_every_optimised_section_shares_the_schedule_rules(section):
    # One Optimisation section under SFT, DPO and RLVR: a rule written once holds for all three.
    with pytest.raises(RecipeError, match=rf"recipe\.{section}: warmup needs lr_scheduler"):
        loads(_tiny_with(section, warmup=10, lr_scheduler="constant"))
    with pytest.raises(RecipeError, match=rf"recipe\.{section}\.learning_rate: Input should be greater than 0"):
        loads(_tiny_with(section, learning_rate=-1))
    with pytest.raises(RecipeError, match=rf"recipe\.{section}\.deepspeed: Input should be"):
        loads(_tiny_with(section, deepspeed="zero4"))
    assert getattr(loads(_tiny_with(section, warmup=0, lr_scheduler="constant")), section).warmup == 0


def test_gpus_on_a_stage_whose_image_has_no_cuda_are_refused():
    from posttrain.stage_table import STAGES

    cpu_only = [name for name, stage in STAGES.items() if not stage.accelerator]
    assert cpu_only  # data, gate, promote run in images/cpu
    tiny = shipped("tiny.yaml")
    for name in cpu_only:
        with pytest.raises(RecipeError, match=rf"recipe.cluster: {name}.gpus: .*CPU image"):
            tiny.override(cluster={name: {"gpus": 1}})
    assert tiny.override(cluster={"sft": {"gpus": 1}}).cluster.sft.gpus == 1


def test_extends_derives_a_recipe_mappings_merged_lists_replaced(tmp_path):
    (tmp_path / "parent.yaml").write_text("name: parent\ndpo: {beta: 0.2, epochs: 3}\n"
                                          "eval: {benchmarks: [arithmetic, humaneval]}\n")
    (tmp_path / "child.yaml").write_text("extends: parent.yaml\nname: child\ndpo: {lora: {rank: 4}}\n"
                                         "eval: {benchmarks: [arithmetic]}\n")
    child = load(tmp_path / "child.yaml")
    assert (child.name, child.dpo.beta, child.dpo.epochs, child.dpo.lora.rank) == ("child", 0.2, 3, 4)
    assert child.eval.benchmarks == ("arithmetic",)
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\nname: loop\n")
    with pytest.raises(RecipeError, match=r"recipe\.extends: loop\.yaml extends itself"):
        load(tmp_path / "loop.yaml")
    (tmp_path / "orphan.yaml").write_text("extends: missing.yaml\nname: orphan\n")
    with pytest.raises(RecipeError, match=r"recipe\.extends: cannot read missing\.yaml"):
        load(tmp_path / "orphan.yaml")
    with pytest.raises(RecipeError, match=r"recipe\.extends: .*not read from a file"):
        loads("extends: parent.yaml\nname: text\n")


def test_tiny_lora_is_tiny_with_lora_dpo_and_grpo():
    tiny, variant = load(ROOT / "recipes" / "tiny.yaml"), load(ROOT / "recipes" / "tiny-lora.yaml")
    assert variant.sft == tiny.sft and variant.sft.lora is None  # full SFT of the scratch model
    assert variant.dpo.lora and variant.rlvr.lora
    assert variant.dpo.model_copy(update={"lora": None, "learning_rate": tiny.dpo.learning_rate}) == tiny.dpo
    assert variant.rlvr.model_copy(update={"lora": None, "learning_rate": tiny.rlvr.learning_rate}) == tiny.rlvr
    assert (variant.data, variant.eval, variant.promote.min_accuracy) == (tiny.data, tiny.eval, tiny.promote.min_accuracy)


def test_one_gpu_tulu3_recipe_is_qlora_sft_lora_dpo_grpo_on_one_gpu():
    full, one = load(ROOT / "recipes" / "tulu3-8b.yaml"), load(ROOT / "recipes" / "tulu3-8b-1gpu.yaml")
    assert one.sft.lora.quantize == "nf4" and one.dpo.lora.quantize == one.rlvr.lora.quantize == "none"
    assert {getattr(one.cluster, s).gpus * getattr(one.cluster, s).nodes for s in ("sft", "dpo", "rlvr")} == {1}
    assert [s.path for s in one.data.sources] == [s.path for s in full.data.sources]  # Tülu 3's mixtures
    assert one.sft.batch_size * one.sft.gradient_accumulation_steps < 128  # smaller effective batch (docs/TULU3.md)
    assert (one.model, one.eval) == (full.model, full.eval)


def test_the_mlflow_registry_without_tracking_is_refused_naming_both_fields():
    recipe = load(ROOT / "recipes" / "tiny.yaml")
    with pytest.raises(RecipeError, match=r"recipe\.promote\.model_registry: mlflow .* recipe\.tracking\.backend is none"):
        recipe.override(tracking={"backend": "none"})
    assert recipe.override(tracking={"backend": "none"}, promote={"model_registry": "none"}).tracking.backend == "none"
