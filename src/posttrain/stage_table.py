"""The one list of stages. Everything else that names stages reads it.

The recipe's `cluster` section has one field per stage here; `components/images.py` tags one image per `image`;
`images/docker-bake.hcl` builds those images; the pipeline sets each task's resources from this list; the
local runner reports stages in this order; `launch.py` starts torchrun only for `distributed` stages.
No kfp import: the library reads it too.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str  # recipe.cluster key, component, task display name, manifest "stage"
    logic: str  # the module holding its run()
    image: str  # the image its component runs in (components/images.py, images/docker-bake.hcl)
    accelerator: bool  # whether its image is the CUDA one (images/gpu) or the CPU one (images/cpu)
    distributed: bool  # whether its trainer runs data-parallel, one process per GPU (launch.py)
    outputs: tuple[str, ...]  # files its output directory always holds beside manifest.json

    @property
    def component(self) -> str:  # the function in posttrain.components
        return self.name


_MODEL = ("config.json", "model.safetensors")

STAGES: dict[str, Stage] = {stage.name: stage for stage in (
    # preflight checks the cluster for what the recipe names (posttrain.preflight); every stage waits for it
    Stage("preflight", "posttrain.preflight", "data", False, False, ()),
    Stage("data", "posttrain.stages.data", "data", False, False,
          ("sft.jsonl", "preference.jsonl", "rlvr.jsonl", "heldout.jsonl", "heldout_ifeval.jsonl", "report.json")),
    # base copies or builds the starting model: the sft image has everything that needs (transformers, tokenizers)
    Stage("base", "posttrain.stages.base", "sft", True, False, (*_MODEL, "tokenizer.json")),
    Stage("sft", "posttrain.stages.sft", "sft", True, True, (*_MODEL, "tokenizer.json")),
    Stage("preference", "posttrain.stages.preference", "preference", True, False,
          ("pairs.jsonl", "heldout_pairs.jsonl", "report.json")),
    Stage("dpo", "posttrain.stages.dpo", "dpo", True, True, _MODEL),
    Stage("rlvr", "posttrain.stages.rlvr", "rlvr", True, True, (*_MODEL, "progress.html")),
    Stage("eval", "posttrain.stages.eval", "eval", True, False, ("scores.json",)),
    # gate and promote are the promote stage's two halves (decide, register): one image
    Stage("gate", "posttrain.stages.promote", "promote", False, False, ("report.json", "report.md")),
    Stage("promote", "posttrain.stages.promote", "promote", False, False, ()),
)}

NAMES = tuple(STAGES)  # pipeline order
IMAGES = tuple(dict.fromkeys(stage.image for stage in STAGES.values()))  # each image once, pipeline order
DISTRIBUTED = tuple(name for name, stage in STAGES.items() if stage.distributed)
