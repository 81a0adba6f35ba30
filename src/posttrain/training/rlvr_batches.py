"""RLVR batch sizes: the recipe says what is global, the stage derives what each device does.

Global (all GPUs of all nodes together), as Tülu 3's scripts count them:
- `rlvr.batch_size`: completions per optimizer update
- `rlvr.prompts_per_rollout`: prompts sampled per rollout, each `num_generations` times
  (0: batch_size / num_generations, one update per rollout)
Derived, per device (world = GPUs x nodes):
- per_device = batch_size / (world x gradient_accumulation_steps) completions per micro-step
- updates per rollout = prompts_per_rollout x num_generations / batch_size
- TRL's steps_per_generation = gradient_accumulation_steps x updates per rollout (micro-steps per rollout)
A setting that does not divide is refused, naming the fields.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Batches:
    world: int  # data-parallel processes: GPUs x nodes
    per_device: int  # completions per device per micro-step
    gradient_accumulation_steps: int
    completions_per_update: int
    prompts_per_rollout: int
    completions_per_rollout: int
    updates_per_rollout: int

    @property
    def steps_per_generation(self) -> int:
        return self.gradient_accumulation_steps * self.updates_per_rollout


def nodes(resources) -> int:
    """`cluster.<stage>.nodes` where the recipe has that field, else one node."""
    return max(1, getattr(resources, "nodes", 1) or 1)


def cluster_world(resources) -> int:
    """Data-parallel processes the cluster spec asks for: GPUs per node x nodes (a CPU pod is one process)."""
    return max(1, resources.gpus) * nodes(resources)


def derive(cfg, world: int) -> Batches:
    """Per-device sizes of `recipe.rlvr` on `world` processes; ValueError naming the fields when they do not divide."""
    accumulation = cfg.gradient_accumulation_steps
    if cfg.batch_size % (world * accumulation):
        raise ValueError(f"recipe.rlvr.batch_size {cfg.batch_size} (completions per update, global) is not divisible "
                         f"by {world} processes (recipe.cluster.rlvr.gpus x nodes) x "
                         f"recipe.rlvr.gradient_accumulation_steps {accumulation}")
    prompts = cfg.prompts_per_rollout or cfg.batch_size // cfg.num_generations
    completions = prompts * cfg.num_generations
    if completions % cfg.batch_size:
        raise ValueError(f"recipe.rlvr.prompts_per_rollout {prompts} x recipe.rlvr.num_generations "
                         f"{cfg.num_generations} = {completions} completions per rollout is not a multiple of "
                         f"recipe.rlvr.batch_size {cfg.batch_size}")
    return Batches(world=world, per_device=cfg.batch_size // (world * accumulation),
                   gradient_accumulation_steps=accumulation, completions_per_update=cfg.batch_size,
                   prompts_per_rollout=prompts, completions_per_rollout=completions,
                   updates_per_rollout=completions // cfg.batch_size)
