"""The one list of stages. Everything else that names stages reads it.

The recipe's `cluster` section has one field per stage here; `components/images.py` tags one image per `image`;
`images/docker-bake.hcl` builds those images; the pipeline builds its graph from `inputs` and passes each task
the recipe sections in `reads` (pipelines/tulu3.py); the local runner reports stages in this order; `launch.py`
starts torchrun only for `distributed` stages; tracking records a stage's `section` as its run's parameters.
No kfp import: the library reads it too.

A stage's identity is what it reads: `reads` (recipe sections, or `cluster.<stage>`-style fields of one) and
its inputs. A stage gets `Recipe.view(reads)`, the recipe with every other section at its defaults, so its
`recipe.digest()` (its manifest's and its checkpoints' key) and its KFP task's parameter change only when a
section it reads changes: another RLVR setting reruns rlvr and what follows, not SFT.
tests/test_stage_reads.py runs every stage with the recipe instrumented and compares `reads` with what it read.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Stage:
    name: str  # recipe.cluster key, component, task display name, manifest "stage"
    logic: str  # the module holding its entry point (benchmarks/direct.py imports it from here)
    image: str  # the image its component runs in (components/images.py, images/docker-bake.hcl)
    accelerator: bool  # whether its image is the CUDA one (images/gpu); `cluster.<stage>.gpus` needs it
    distributed: bool  # whether its trainer runs data-parallel, one process per GPU (launch.py)
    output: str  # its component's main output artifact, the one later stages take
    # component parameter -> the stage whose `output` it takes: the pipeline's edges, in the order its entry
    # point takes them (eval takes the models as one mapping)
    inputs: dict[str, str] = field(default_factory=dict)
    # The recipe sections it reads (a section, or one field of one: "cluster.sft"); its run's identity.
    # `name` and `tracking` are read by every component (tracking.stage): see READ_BY_EVERY_TASK.
    reads: tuple[str, ...] = ()
    section: str = ""  # the section tracking records as the run's parameters; "" : its own name
    when: str = ""  # the stage whose boolean result must be true for it to run ("" : always)
    entry: str = "run"  # the function of `logic` the component calls: entry(recipe, *inputs, out_dir)
    first: bool = False  # a check every other task waits for (plan, preflight): no GPU is asked for before it passes

    @property
    def component(self) -> str:  # the function in posttrain.components
        return self.name

    @property
    def sandboxed(self) -> bool:  # runs model-written code: the sandbox's NetworkPolicy admits its pods
        return "sandbox" in self.reads


# Read by every component, around the stage's own run (tracking.stage): part of every task's identity.
READ_BY_EVERY_TASK = ("name", "tracking")
# The training stages' checkpoints: where they go and how long they are kept (training/checkpoints.py).
_CHECKPOINTS = ("cluster.checkpoint_url", "cluster.checkpoint_retention_days")

STAGES: dict[str, Stage] = {stage.name: stage for stage in (
    # plan: every stage's GPU memory, time and cost, before any GPU is asked for (posttrain.plan); the CPU image.
    # It reads the whole recipe, and every other stage waits for it (pipelines/tulu3.py).
    Stage("plan", "posttrain.plan", "data", False, False, "table", reads=("*",), section="cluster", first=True),
    # preflight: every cluster object the recipe names, checked through the Kubernetes API (posttrain.preflight);
    # beside the plan, and every later stage waits for both
    Stage("preflight", "posttrain.preflight", "data", False, False, "", reads=("*",), section="cluster", first=True),
    Stage("data", "posttrain.stages.data", "data", False, False, "dataset",
          reads=("seed", "data", "eval.hf_datasets", "sandbox")),
    # base copies or builds the starting model: the sft image has everything that needs (transformers, tokenizers)
    Stage("base", "posttrain.stages.base", "sft", True, False, "model", {"dataset": "data"},
          reads=("seed", "model"), section="model"),
    Stage("sft", "posttrain.stages.sft", "sft", True, True, "model", {"base_model": "base", "dataset": "data"},
          reads=("seed", "model", "sft", "cluster.sft", *_CHECKPOINTS)),
    Stage("preference", "posttrain.stages.preference", "preference", True, False, "pairs",
          {"policy": "sft", "dataset": "data"}, reads=("seed", "model", "preference", "sandbox")),
    Stage("dpo", "posttrain.stages.dpo", "dpo", True, True, "model", {"policy": "sft", "pairs": "preference"},
          reads=("seed", "model", "dpo", "cluster.dpo", *_CHECKPOINTS)),
    Stage("rlvr", "posttrain.stages.rlvr", "rlvr", True, True, "model", {"policy": "dpo", "dataset": "data"},
          reads=("seed", "model", "rlvr", "cluster.rlvr", "sandbox", *_CHECKPOINTS)),
    Stage("eval", "posttrain.stages.eval", "eval", True, False, "scores",
          {"dataset": "data", "base_model": "base", "sft_model": "sft", "dpo_model": "dpo", "rlvr_model": "rlvr"},
          reads=("seed", "model", "data.decontamination", "eval", "promote", "sandbox")),
    # gate and promote are the promote stage's two halves (decide, register): one image. They record the whole
    # recipe (the registry entry's lineage), so they read all of it.
    Stage("gate", "posttrain.stages.promote", "promote", False, False, "report", {"scores": "eval"},
          reads=("*",), section="promote", entry="decide"),
    Stage("promote", "posttrain.stages.promote", "promote", False, False, "", {"model": "rlvr", "report": "gate"},
          reads=("*",), when="gate", entry="register"),
)}

NAMES = tuple(STAGES)  # pipeline order
IMAGES = tuple(dict.fromkeys(stage.image for stage in STAGES.values()))  # each image once, pipeline order
DISTRIBUTED = tuple(name for name, stage in STAGES.items() if stage.distributed)
SANDBOXED = tuple(name for name, stage in STAGES.items() if stage.sandboxed)
