"""Plan before paying: every stage's per-GPU memory, tokens, FLOPs, GPU-hours, wall time, cost and checkpoints,
computed on this machine before a GPU is asked for; a recipe with a stage that does not fit is refused.

`make(recipe)` builds the plan, `check(recipe)` raises `PlanError` (a `RecipeError`) naming the stage, the
fields to change and the numbers, `markdown(plan)` renders the table. What is measured by tracing and what is a
formula: `memory` and `compute` say, docs/PLAN.md lists it. A recipe whose stages use no GPU (the tiny and CPU
recipes) is planned without building or tracing anything. No kfp import: the pipeline's first task calls this.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from posttrain.plan import compute, memory
from posttrain.plan.memory import GiB, PARTS, Memory
from posttrain.recipe import Recipe, RecipeError
from posttrain.stage_table import NAMES

__all__ = ["Plan", "PlanError", "StagePlan", "check", "make", "markdown", "run"]


class PlanError(RecipeError):
    """A recipe with a stage that does not fit its accelerators; the message names the fields and numbers."""


@dataclass
class StagePlan:
    stage: str
    gpus: int  # all the stage's GPUs (per node x nodes); 0: a CPU pod
    memory: Memory | None
    compute: compute.Compute | None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Plan:
    recipe: str
    model: str
    parameters: int
    stages: list[StagePlan]
    seconds: float

    @property
    def problems(self) -> list[str]:
        return [p for s in self.stages for p in s.problems]


def _uses_gpu(recipe: Recipe, stage: str) -> bool:
    """Whether the stage's work needs an accelerator (the pod may ask for one regardless)."""
    if stage == "preference":
        return bool(recipe.data.preference_prompts)  # else it only splits pairs the data stage brought
    return stage in ("sft", "dpo", "rlvr", "eval")


def make(recipe: Recipe, data_dir: str | Path | None = None) -> Plan:
    start = time.perf_counter()
    gpu_stages = [s for s in NAMES if getattr(recipe.cluster, s).gpus]
    if not gpu_stages:  # tiny and CPU recipes: nothing to fit on an accelerator
        return Plan(recipe.name, recipe.model.base, 0, [StagePlan(s, 0, None, None) for s in NAMES],
                    time.perf_counter() - start)
    from posttrain.plan.architecture import architecture

    arch = architecture(recipe)
    data_dir = Path(data_dir) if data_dir else None
    stages = []
    for stage in NAMES:
        res = getattr(recipe.cluster, stage)
        plan = StagePlan(stage, res.gpus * res.nodes, None, None)
        stages.append(plan)
        if not res.gpus:
            continue
        if not _uses_gpu(recipe, stage):
            plan.notes.append(f"{stage}: asks for {res.gpus} GPUs but uses none (it only splits the pairs the data "
                              f"stage brought); set recipe.cluster.{stage}.gpus: 0")
            continue
        mem = Memory(res.gpu_memory_gib * GiB, recipe.cluster.memory_headroom * res.gpu_memory_gib * GiB)
        if stage in ("sft", "dpo", "rlvr"):
            getattr(memory, stage)(recipe, arch, mem)
        elif stage == "preference":
            cfg = recipe.preference
            memory.inference(recipe, arch, mem, stage, cfg.batch_size * cfg.samples_per_prompt,
                             2 * cfg.max_new_tokens, ("recipe.preference.batch_size",))
        else:
            cfg = recipe.eval
            memory.inference(recipe, arch, mem, stage, cfg.batch_size, cfg.max_prompt_tokens + cfg.max_new_tokens,
                             ("recipe.eval.batch_size", "recipe.eval.max_new_tokens"))
        mem.check(stage)
        lora = getattr(getattr(recipe, stage, None), "lora", None)
        adapter = arch.adapter_parameters(lora.rank, lora.target_modules) if lora else 0
        plan.memory, plan.compute = mem, compute.plan(recipe, stage, arch.parameters, data_dir, adapter)
        plan.problems, plan.notes = mem.problems, plan.notes + mem.notes
        _checkpoints(recipe, plan)
    return Plan(recipe.name, recipe.model.base, arch.parameters, stages, time.perf_counter() - start)


def _checkpoints(recipe: Recipe, plan: StagePlan) -> None:
    c, grace = plan.compute, recipe.cluster.grace_period_s
    if not c.checkpoint_bytes or c.checkpoint_write_s <= grace or c.checkpoint_minutes is not None:
        return
    plan.problems.append(
        f"{plan.stage}: a checkpoint is {c.checkpoint_bytes / 1e9:.0f} GB, {c.checkpoint_write_s:.0f} s to write, "
        f"more than the pods' {grace:.0f} s grace period (recipe.cluster.grace_period_s), and no periodic "
        f"checkpoint is set: a preempted pod restarts from step 0 of a {c.wall_hours:.1f} h stage; set "
        f"recipe.{plan.stage}.checkpoints.every_minutes")


def check(recipe: Recipe, data_dir: str | Path | None = None) -> Plan:
    """The plan, or PlanError listing every stage that does not fit."""
    return _refuse(make(recipe, data_dir))


def _refuse(plan: Plan) -> Plan:
    if plan.problems:
        raise PlanError(f"recipe {plan.recipe} does not fit (posttrain plan shows the table):\n  - "
                        + "\n  - ".join(plan.problems))
    return plan


def run(recipe: Recipe, table: str | Path) -> Plan:
    """The pipeline's first task: the table to `table` (markdown), then PlanError when a stage does not fit."""
    result = make(recipe)
    Path(table).write_text(markdown(result))
    print(markdown(result))
    return _refuse(result)


def _gib(value: float) -> str:
    return f"{value / GiB:.1f}" if value else ""


def markdown(plan: Plan) -> str:
    """The plan as a markdown table: per-GPU memory at each stage's peak, then time, cost and checkpoints."""
    lines = [f"Plan of **{plan.recipe}**: {plan.model}"
             + (f", {plan.parameters / 1e9:.2f}B parameters" if plan.parameters else "") + ".", ""]
    lines += ["| stage | GPUs | peak phase | " + " | ".join(PARTS) + " | headroom | GiB per GPU | fits |",
              "|---|---:|---|" + "---:|" * (len(PARTS) + 2) + "---|"]
    for s in plan.stages:
        peak = s.memory.peak if s.memory else None
        if peak is None:
            lines.append(f"| {s.stage} | {s.gpus} | {'CPU' if not s.gpus else 'no GPU work'} |"
                         + " |" * (len(PARTS) + 2) + " yes |")
            continue
        need = peak.total + s.memory.headroom
        lines.append(f"| {s.stage} | {s.gpus} | {peak.name} | " + " | ".join(_gib(peak.parts.get(p, 0)) for p in PARTS)
                     + f" | {_gib(s.memory.headroom)} | {need / GiB:.1f} of {s.memory.capacity / GiB:.0f} | "
                     + ("**no**" if s.problems else "yes") + " |")
    lines += ["", "| stage | tokens | PFLOP | GPU-hours | wall hours | cost USD | checkpoint GB | write s | "
              "checkpoint every |", "|---|" + "---:|" * 8]
    for s in plan.stages:
        c = s.compute
        if c is None:
            continue
        every = f"{c.checkpoint_minutes:.0f} min" if c.checkpoint_minutes is not None else (
            "SIGTERM only" if c.checkpoint_bytes else "")
        lines.append(f"| {s.stage} | {c.tokens / 1e9:.2f}B | {c.flops / 1e15:,.0f} | {c.gpu_hours:,.1f} | "
                     f"{c.wall_hours:.1f} | {c.cost_usd:,.0f} | "
                     + (f"{c.checkpoint_bytes / 1e9:.0f} | {c.checkpoint_write_s:.0f} | {every} |"
                        if c.checkpoint_bytes else " | | |"))
    notes = [n for s in plan.stages for n in s.notes]
    problems = plan.problems
    if problems:
        lines += ["", "**Does not fit:**", *(f"- {p}" for p in problems)]
    if notes:
        lines += ["", "Notes:", *(f"- {n}" for n in notes)]
    return "\n".join(lines) + "\n"
