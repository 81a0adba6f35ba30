"""The Tülu 3 pipeline: preflight -> data -> base -> sft -> preference -> dpo -> rlvr -> eval -> gate -> promote."""

from pathlib import Path  # no `from __future__ import annotations`: KFP reads real annotations

from kfp import compiler, dsl, kubernetes

from posttrain import components as c
from posttrain.pipelines.resources import apply
from posttrain.pipelines import training
from posttrain.recipe import Recipe
from posttrain.sandbox import CLIENT_LABEL as SANDBOX_CLIENT_LABEL
from posttrain.stage_table import NAMES
from posttrain.training.trainjob import NAMESPACE_ENV, RUN_AS

NAME = "tulu3"
IR = Path(__file__).with_name("tulu3.yaml")


def build(recipe: Recipe):
    """The pipeline for `recipe`; the recipe text (YAML or JSON) is its one parameter, default this recipe.

    The default is one line of JSON: KFP copies defaults into a comment at the top of the IR, and a
    multi-line default there makes the file invalid YAML.
    """

    spec = recipe  # the recipe as compiled; the `recipe` parameter below is the run-time text

    @dsl.pipeline(name=NAME, description="Tülu 3 post-training: SFT, DPO and RLVR, evaluated and gated.")
    def tulu3(recipe: str = recipe.model_dump_json()) -> dsl.Artifact:
        first = c.preflight(recipe=recipe)
        data = c.data(recipe=recipe)
        base = c.base(recipe=recipe, dataset=data.outputs["dataset"])
        sft = c.sft(recipe=recipe, dataset=data.outputs["dataset"], base_model=base.outputs["model"])
        pairs = c.preference(recipe=recipe, dataset=data.outputs["dataset"], policy=sft.outputs["model"])
        dpo = c.dpo(recipe=recipe, pairs=pairs.outputs["pairs"], policy=sft.outputs["model"])
        rlvr = c.rlvr(recipe=recipe, dataset=data.outputs["dataset"], policy=dpo.outputs["model"])
        scores = c.eval(recipe=recipe, dataset=data.outputs["dataset"], base_model=base.outputs["model"],
                        sft_model=sft.outputs["model"], dpo_model=dpo.outputs["model"],
                        rlvr_model=rlvr.outputs["model"])
        gate = c.gate(recipe=recipe, scores=scores.outputs["scores"])
        # Scores and decisions must reflect this run's artifacts, never a cache hit keyed on names.
        for task in (scores, gate):
            task.set_caching_options(False)
        with dsl.If(gate.outputs["Output"] == True, name="gate-passed"):  # noqa: E712 (KFP condition)
            promote = c.promote(recipe=recipe, model=rlvr.outputs["model"], report=gate.outputs["report"])
            promote.set_caching_options(False)
        tasks = {"preflight": first, "data": data, "base": base, "sft": sft, "preference": pairs, "dpo": dpo, "rlvr": rlvr,
                 "eval": scores, "gate": gate, "promote": promote}
        if set(tasks) != set(NAMES):
            raise ValueError(f"pipeline tasks {sorted(tasks)} differ from posttrain.stage_table {sorted(NAMES)}")
        for stage in NAMES:
            apply(tasks[stage].set_display_name(stage), getattr(spec.cluster, stage))
            # The KFP run id groups the stages' tracking runs (posttrain.reporting.tracking); KFP labels each pod with it.
            kubernetes.use_field_path_as_env(tasks[stage], "KFP_RUN_ID", "metadata.labels['pipeline/runid']")
            # Pod Security "restricted": the images' user; KFP >= 2.15 adds no privilege escalation, drop ALL and
            # seccomp RuntimeDefault itself (kfp.kubernetes.set_security_context)
            kubernetes.set_security_context(tasks[stage], run_as_user=RUN_AS, run_as_group=RUN_AS,
                                            run_as_non_root=True)
            if stage != "preflight":
                tasks[stage].after(first)
        kubernetes.use_field_path_as_env(first, env_name=NAMESPACE_ENV, field_path="metadata.namespace")
        for secret in spec.cluster.promote.secrets:  # the bucket probe writes as promote will; a missing
            # Secret must not keep the pod from starting: preflight names it
            kubernetes.use_secret_as_env(first, secret_name=secret.secret, secret_key_to_env=dict(secret.env),
                                         optional=True)
        for task in (data, pairs, rlvr, scores):  # they run model-written code: the sandbox's NetworkPolicy admits them
            kubernetes.add_pod_label(task, *SANDBOX_CLIENT_LABEL)
        for stage in training.STAGES:
            training.apply(tasks[stage], stage, spec)
        return gate.outputs["report"]

    return tulu3


def compile(recipe: Recipe, path: str | Path = IR) -> Path:
    compiler.Compiler().compile(build(recipe), str(path))
    return Path(path)
