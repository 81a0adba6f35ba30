"""The components. Bodies run in the stage's image, so they import what they need inside the function."""
# ruff: noqa: A001  (`eval` is the stage's name everywhere, as DESIGN.md asks)
from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from posttrain.components.images import image


@dsl.component(base_image=image("plan"), install_kfp_package=False)
def plan(recipe: str, table: Output[Markdown]):
    """Every stage's per-GPU memory, tokens, GPU-hours, cost and checkpoints (`table`); fails, before any GPU
    is asked for, when a stage does not fit, naming the fields to change."""
    from posttrain import plan as stage
    from posttrain.recipe import loads

    stage.run(loads(recipe), table.path)


@dsl.component(base_image=image("preflight"), install_kfp_package=False)
def preflight(recipe: str):
    """Check that the cluster holds every object the recipe names, with this pod's service account; a run that
    lacks any stops here, every problem listed with its fix, not hours later in a stage (posttrain.preflight)."""
    from posttrain import preflight as cluster
    from posttrain.recipe import loads

    cluster.run(loads(recipe))


@dsl.component(base_image=image("data"), install_kfp_package=False)
def data(recipe: str, dataset: Output[Dataset], summary: Output[Markdown]):
    """Synthesise, deduplicate, decontaminate and split the training and held-out data; `summary` is the
    data report (rows per split and language, synthesis, duplicates, sources, decontamination)."""
    from pathlib import Path

    from posttrain.reporting import tracking
    from posttrain.recipe import loads
    from posttrain.reporting.report import render_data_markdown
    from posttrain.stages import data as stage

    with tracking.stage(loads(recipe), "data", dataset.path):
        Path(summary.path).write_text(render_data_markdown(stage.run(loads(recipe), dataset.path)))


@dsl.component(base_image=image("base"), install_kfp_package=False)
def base(recipe: str, dataset: Input[Dataset], model: Output[Model]):
    """The starting model: built from scratch (tiny) or copied from a path or Hub name."""
    from posttrain.recipe import loads
    from posttrain.stages import base as stage

    stage.run(loads(recipe), dataset.path, model.path)


@dsl.component(base_image=image("sft"), install_kfp_package=False)
def sft(recipe: str, dataset: Input[Dataset], base_model: Input[Model], model: Output[Model]):
    """Supervised fine-tuning on the assistant turns."""
    from posttrain.reporting import tracking
    from posttrain.training.launch import run_stage
    from posttrain.recipe import loads

    with tracking.stage(loads(recipe), "sft", model.path):
        run_stage("sft", loads(recipe), base_model.path, dataset.path, model.path)


@dsl.component(base_image=image("preference"), install_kfp_package=False)
def preference(recipe: str, dataset: Input[Dataset], policy: Input[Model], pairs: Output[Dataset]):
    """Sample completions from the policy and judge them into chosen/rejected pairs."""
    from posttrain.reporting import tracking
    from posttrain.recipe import loads
    from posttrain.stages import preference as stage

    with tracking.stage(loads(recipe), "preference", pairs.path):
        stage.run(loads(recipe), policy.path, dataset.path, pairs.path)


@dsl.component(base_image=image("dpo"), install_kfp_package=False)
def dpo(recipe: str, pairs: Input[Dataset], policy: Input[Model], model: Output[Model]):
    """Length-normalised DPO on the preference pairs."""
    from posttrain.reporting import tracking
    from posttrain.training.launch import run_stage
    from posttrain.recipe import loads

    with tracking.stage(loads(recipe), "dpo", model.path):
        run_stage("dpo", loads(recipe), policy.path, pairs.path, model.path)


@dsl.component(base_image=image("rlvr"), install_kfp_package=False)
def rlvr(recipe: str, dataset: Input[Dataset], policy: Input[Model], model: Output[Model], progress: Output[HTML]):
    """Reinforcement learning with verifiable rewards (GRPO or PPO, as the recipe says); `progress` plots
    reward, accuracy, KL and completion length per step."""
    import shutil

    from posttrain.reporting import tracking
    from posttrain.training.launch import run_stage
    from posttrain.recipe import loads

    with tracking.stage(loads(recipe), "rlvr", model.path):
        run_stage("rlvr", loads(recipe), policy.path, dataset.path, model.path)
    shutil.copyfile(f"{model.path}/progress.html", progress.path)


@dsl.component(base_image=image("eval"), install_kfp_package=False)
def eval(recipe: str, dataset: Input[Dataset], base_model: Input[Model], sft_model: Input[Model],
         dpo_model: Input[Model], rlvr_model: Input[Model], scores: Output[Artifact], metrics: Output[Metrics]):
    """Score every stage's model on the same held-out items; the last one is the candidate."""
    import json

    from posttrain.reporting import tracking
    from posttrain.recipe import loads
    from posttrain.stages import eval as stage

    models = {"base": base_model.path, "sft": sft_model.path, "dpo": dpo_model.path, "rlvr": rlvr_model.path}
    with tracking.stage(loads(recipe), "eval", scores.path):
        result = stage.run(loads(recipe), dataset.path, models, scores.path)
    for benchmark, by_model in result["benchmarks"].items():
        for label, score in by_model.items():
            metrics.log_metric(f"{benchmark}/{label}", round(score["score"], 4))
    print(json.dumps({label: r["score"] for b in result["benchmarks"].values() for label, r in b.items()}))


@dsl.component(base_image=image("gate"), install_kfp_package=False)
def gate(recipe: str, scores: Input[Artifact], report: Output[Artifact], summary: Output[Markdown],
         page: Output[HTML]) -> bool:
    """Apply the recipe's thresholds; the report (scores, decision, reasons) is kept whatever the verdict."""
    import shutil

    from posttrain.reporting import tracking
    from posttrain.recipe import loads
    from posttrain.stages import promote as stage

    with tracking.stage(loads(recipe), "gate", report.path):
        result = stage.decide(loads(recipe), scores.path, report.path)
    shutil.copyfile(f"{report.path}/report.md", summary.path)
    shutil.copyfile(f"{report.path}/report.html", page.path)
    return result["gate"]["passed"]


@dsl.component(base_image=image("promote"), install_kfp_package=False)
def promote(recipe: str, model: Input[Model], report: Input[Artifact]) -> str:
    """Write the create-only registry entry for a model the gate passed; returns its URL."""
    from posttrain.reporting import tracking
    from posttrain.recipe import loads
    from posttrain.stages import promote as stage

    with tracking.stage(loads(recipe), "promote"):
        return stage.register(loads(recipe), model.path, report.path)
