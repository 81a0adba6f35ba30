"""The Tülu 3 pipeline: plan, preflight -> data -> base -> sft -> preference -> dpo -> rlvr -> eval -> gate -> promote.

The graph is posttrain.stage_table's: each task takes its `inputs` from the named stages' `output`s, and its
view of the recipe (components/views.py) as its `recipe` parameter.
"""

from pathlib import Path  # no `from __future__ import annotations`: KFP reads real annotations

from kfp import compiler, dsl, kubernetes

from posttrain import components as c
from posttrain.components.views import views
from posttrain.pipelines.resources import apply
from posttrain.pipelines import training
from posttrain.recipe import Recipe
from posttrain.sandbox import CLIENT_LABEL as SANDBOX_CLIENT_LABEL
from posttrain.stage_table import NAMES, SANDBOXED, STAGES
from posttrain.training.trainjob import NAMESPACE_ENV, RUN_AS

NAME = "tulu3"
IR = Path(__file__).with_name("tulu3.yaml")
FIRST = tuple(name for name, stage in STAGES.items() if stage.first)  # plan, preflight: every other task waits
VIEWED = tuple(name for name, stage in STAGES.items() if "*" not in stage.reads)  # the views task's outputs
# Scores and decisions must reflect this run's artifacts, never a cache hit keyed on names; the preflight reads
# the cluster as it is now.
UNCACHED = ("preflight", "eval", "gate", "promote")


def build(recipe: Recipe):
    """The pipeline for `recipe`; the recipe text (YAML or JSON) is its one parameter, default this recipe.

    The default is one line of JSON: KFP copies defaults into a comment at the top of the IR, and a
    multi-line default there makes the file invalid YAML.
    """

    spec = recipe  # the recipe as compiled; the `recipe` parameter below is the run-time text
    outputs = tuple(views.component_spec.outputs)
    if outputs != VIEWED:
        raise ValueError(f"components/views.py gives views of {outputs}; posttrain.stage_table wants {VIEWED}")

    @dsl.pipeline(name=NAME, description="Tülu 3 post-training: SFT, DPO and RLVR, evaluated and gated.")
    def tulu3(recipe: str = recipe.model_dump_json()) -> dsl.Artifact:
        split = views(recipe=recipe).set_display_name("views")
        split.set_caching_options(False)  # a few seconds; its outputs are what the stages' cache keys compare
        tasks = {}
        for name, stage in STAGES.items():
            given = split.outputs[name] if name in VIEWED else recipe
            arguments = {key: tasks[up].outputs[STAGES[up].output] for key, up in stage.inputs.items()}
            if stage.when:  # runs only if that stage's boolean result is true (promote after a passed gate)
                with dsl.If(tasks[stage.when].outputs["Output"] == True, name=f"{stage.when}-passed"):  # noqa: E712
                    tasks[name] = getattr(c, stage.component)(recipe=given, **arguments)
            else:
                tasks[name] = getattr(c, stage.component)(recipe=given, **arguments)
            if name in UNCACHED:
                tasks[name].set_caching_options(False)
        for stage in NAMES:
            apply(tasks[stage].set_display_name(stage), getattr(spec.cluster, stage))
            # The KFP run id groups the stages' tracking runs (posttrain.reporting.tracking); KFP labels each pod with it.
            kubernetes.use_field_path_as_env(tasks[stage], "KFP_RUN_ID", "metadata.labels['pipeline/runid']")
            # Pod Security "restricted": the images' user; KFP >= 2.15 adds no privilege escalation, drop ALL and
            # seccomp RuntimeDefault itself (kfp.kubernetes.set_security_context)
            kubernetes.set_security_context(tasks[stage], run_as_user=RUN_AS, run_as_group=RUN_AS,
                                            run_as_non_root=True)
            if stage not in FIRST:  # nothing asks for a GPU before the plan and the preflight pass
                tasks[stage].after(*(tasks[name] for name in FIRST))
        preflight = tasks["preflight"]
        kubernetes.use_field_path_as_env(preflight, env_name=NAMESPACE_ENV, field_path="metadata.namespace")
        for secret in spec.cluster.promote.secrets:  # the bucket probe writes as promote will; a missing
            # Secret must not keep the pod from starting: preflight names it
            kubernetes.use_secret_as_env(preflight, secret_name=secret.secret, secret_key_to_env=dict(secret.env),
                                         optional=True)
        for stage in SANDBOXED:  # they run model-written code: the sandbox's NetworkPolicy admits them
            kubernetes.add_pod_label(tasks[stage], *SANDBOX_CLIENT_LABEL)
        for stage in training.STAGES:
            training.apply(tasks[stage], stage, spec)
        return tasks["gate"].outputs["report"]

    return tulu3


def compile(recipe: Recipe, path: str | Path = IR) -> Path:
    compiler.Compiler().compile(build(recipe), str(path))
    return Path(path)
