"""SFT throughput: our stage's trainer settings against TRL's default padded configuration, same data, one run.

    python benchmarks/sft.py [--rows 2000] [--steps 40]

The data is a Tülu-like mix of lengths: conversations of 1 to 8 persona arithmetic turns (about 80 to 650
tokens), where the order of batches decides how much padding is computed. Both sides train the same tiny
model for the same number of steps; a wrapper around the collator counts real and padded tokens.
Prints one JSON line: real tokens/s (ours, baseline, ratio) and the real-token fraction of each side.
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from posttrain.data.arithmetic import problems
from posttrain.models.tiny import build
from posttrain.recipe import Recipe, TinyModel
from posttrain.stages.sft import trainer_config


class CountingCollator:
    """Counts the real (attention_mask == 1) and total tokens of every batch it builds."""

    def __init__(self, collate):
        self.collate, self.real, self.total = collate, 0, 0

    def __call__(self, examples):
        batch = self.collate(examples)
        mask = batch.get("attention_mask")
        if mask is None:  # padding-free batches carry no mask: every position is a real token
            self.real += batch["input_ids"].numel()
        else:
            self.real += int(mask.sum())
        self.total += batch["input_ids"].numel()
        return batch


def conversations(rows: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    source = problems(seed, rows * 8, 3, ["add", "sub"], ["en", "de", "fr", "es", "it"])
    out = []
    for _ in range(rows):
        messages = []
        for _ in range(rng.randint(1, 8)):
            row = next(source)
            messages += [row["messages"][0], {"role": "assistant", "content": row["solution"]}]
        out.append({"messages": messages})
    return out


def measure(args, model_dir: Path, data: list[dict], out: Path) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(data), processing_class=tokenizer)
    trainer.data_collator = counting = CountingCollator(trainer.data_collator)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {"tokens_per_s": counting.real / seconds, "real_fraction": counting.real / counting.total,
            "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    cli = parser.parse_args()
    recipe = Recipe(name="bench").override(sft={"batch_size": cli.batch_size, "max_length": 1024, "warmup": 0})
    data = conversations(cli.rows, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build((m["content"] for row in data for m in row["messages"]), TinyModel(max_positions=1024), tmp / "m")
        ours_args = replace(trainer_config(recipe, tmp / "ours"), max_steps=cli.steps, logging_steps=10_000)
        # TRL's default: batches in random order, each padded to its longest conversation.
        base_args = replace(ours_args, output_dir=str(tmp / "base"), train_sampling_strategy="random", packing=False)
        baseline = measure(base_args, tmp / "m", data, tmp / "base")
        ours = measure(ours_args, tmp / "m", data, tmp / "ours")
    print(json.dumps({"benchmark": "sft", "ours": round(ours["tokens_per_s"]), "baseline": round(baseline["tokens_per_s"]),
                      "unit": "real tokens/s", "ratio": round(ours["tokens_per_s"] / baseline["tokens_per_s"], 2),
                      "ours_real_fraction": round(ours["real_fraction"], 3),
                      "baseline_real_fraction": round(baseline["real_fraction"], 3),
                      "steps": cli.steps, "batch_size": cli.batch_size}))


if __name__ == "__main__":
    main()
