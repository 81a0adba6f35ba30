"""base stage: the model post-training starts from.

`model.base: tiny` builds a small Llama (`model.tiny`: 1.1M parameters by default, 0.56M in the demo) and its
tokenizer (trained on a fixed corpus that does not depend on the run's data, `models/tiny.py`); anything else
is a local path or Hub name, copied into the stage output with `save_pretrained` so the run's lineage
holds the exact weights it started from, with the recipe's `model.chat_template` set on its tokenizer.
"""
from __future__ import annotations

import time
from pathlib import Path

from posttrain.models import chat_templates
from posttrain.recipe import Recipe
from posttrain.store import finished, seal


def run(recipe: Recipe, data_dir: str | Path, out_dir: str | Path) -> dict:
    start = time.perf_counter()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if done := finished(out_dir, "base", recipe.digest(), {"data": data_dir}):
        return done["summary"]
    if recipe.model.base == "tiny":
        from posttrain.models.tiny import build, tokenizer_corpus

        parameters = build(tokenizer_corpus(), recipe.model.tiny, out_dir, seed=recipe.seed_for("model"))
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        # The weights as published, with transformers: generation.load gives a vLLM engine (no save_pretrained) or
        # bf16 weights where a GPU is, and the sft image has both.
        trust = recipe.model.trust_remote_code
        model = AutoModelForCausalLM.from_pretrained(recipe.model.base, trust_remote_code=trust)
        tokenizer = AutoTokenizer.from_pretrained(recipe.model.base, trust_remote_code=trust)
        tokenizer.padding_side = "left"  # as generation.load leaves it: later stages read this tokenizer
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        chat_templates.apply(tokenizer, recipe.model.chat_template, recipe.model.base)  # refused before training
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
        parameters = model.num_parameters()
    summary = {"source": recipe.model.base, "parameters": parameters}
    seconds = time.perf_counter() - start
    seal(out_dir, "base", recipe.digest(), inputs={"data": data_dir}, summary=summary, seconds=seconds)
    print(f"base: {parameters:,} parameters from {recipe.model.base!r} saved to {out_dir} in {seconds:.1f}s")
    return summary
