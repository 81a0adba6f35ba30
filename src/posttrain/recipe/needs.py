"""The packages a recipe's settings need at run time beyond what every stage imports (pyproject.toml's
dependencies), read from the recipe's fields: each answer names the field that asks for it.

The GPU image's lock (images/gpu/requirements.lock) must hold them for every shipped recipe
(tests/test_gpu_lock.py), so a recipe that turns on an engine or a trainer the image cannot run fails CI, not
a pod hours into a run. Requirements carry extras where the feature uses them (lm-eval's task extras).
"""
from __future__ import annotations

from typing import Any

from posttrain.recipe import Recipe

TRAINING_STAGES = ("sft", "dpo", "rlvr")


def packages(recipe: Recipe) -> dict[str, str]:
    """Requirement (a PEP 508 string) -> the recipe field that needs it, e.g. {"deepspeed": "recipe.sft.deepspeed"}."""
    needs: dict[str, str] = {}
    sections: dict[str, Any] = recipe.model_dump()
    for stage in TRAINING_STAGES:
        section = sections[stage]
        if section["deepspeed"] != "none":
            needs.setdefault("deepspeed", f"recipe.{stage}.deepspeed")
        # A stage's `lora` section (None: full fine-tuning) trains a PEFT adapter; `quantize` loads the frozen
        # base in 4 bits (QLoRA), which is bitsandbytes. Read from the dump: recipes without the field have neither.
        lora = section.get("lora")
        if lora:
            needs.setdefault("peft", f"recipe.{stage}.lora")
            if lora.get("quantize", "none") != "none":
                needs.setdefault("bitsandbytes", f"recipe.{stage}.lora.quantize")
    if recipe.rlvr.vllm != "off":  # auto: vLLM generates the rollouts wherever it is installed with a GPU
        needs.setdefault("vllm", "recipe.rlvr.vllm")
    if recipe.eval.engine == "lm_eval":
        # ifeval and math: the task extras of the suites posttrain.evals.harness runs; vLLM is its GPU backend.
        needs["lm-eval[ifeval,math]"] = "recipe.eval.engine"
        needs.setdefault("vllm", "recipe.eval.engine")
    if recipe.preference.judge == "reward_model":  # a sequence-classification model scores the samples
        needs.setdefault("transformers", "recipe.preference.judge")
    # judge: llm and synthesis backend openai speak HTTP with the standard library (posttrain.generators): no client.
    return needs
