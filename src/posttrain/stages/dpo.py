"""dpo stage: TRL DPOTrainer with the length-normalised loss, the SFT model as (frozen) reference.

Reports the chosen-vs-rejected log-prob margin on held-out pairs before and after training.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from posttrain.data.formats import read_rows
from posttrain.recipe import Recipe
from posttrain.training import lora, stage
from posttrain.training.logprobs import preference_margin
from posttrain.training.trainer import step_log, world_size


def trainer_config(recipe: Recipe, output_dir: str | Path):
    """DPOConfig writing checkpoints to `output_dir`."""
    from trl import DPOConfig

    cfg = recipe.dpo
    losses = {cfg.loss_type: 1.0, **({"sft": cfg.sft_weight} if cfg.sft_weight else {})}
    return DPOConfig(**stage.trainer_arguments(
        recipe, "dpo", output_dir,
        loss_type=list(losses),
        loss_weights=list(losses.values()),
        beta=cfg.beta,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        max_length=cfg.max_length,
        precompute_ref_log_probs=cfg.precompute_ref_log_probs,
    ))


def to_trl(pair: dict) -> dict:
    """Tülu rows (full conversations) to TRL's explicit-prompt conversational format."""
    return {"prompt": pair["chosen"][:-1], "chosen": pair["chosen"][-1:], "rejected": pair["rejected"][-1:]}


def train(run: stage.Run) -> dict | None:
    from datasets import Dataset
    from trl import DPOTrainer

    from posttrain.training.devices import accelerator

    rows = read_rows(run.inputs["pairs"] / "pairs.jsonl", "preference")
    dataset = Dataset.from_list([to_trl(p) for p in rows])
    heldout = read_rows(run.inputs["pairs"] / "heldout_pairs.jsonl", "preference")
    # On this process's GPU, where the trainer puts the model anyway; logprobs.py builds its inputs there. Rank
    # 0 alone (RANK is set by torchrun before any process group): the others would only repeat it.
    margin = {"batch_size": run.recipe.dpo.margin_batch_size, "max_length": run.recipe.dpo.max_length}
    first = os.environ.get("RANK", "0") == "0"
    margin_before = preference_margin(run.model.to(accelerator()).eval(), run.tokenizer, heldout, **margin) if first else 0.0
    trained = run.fit(DPOTrainer, trainer_config(run.recipe, run.checkpoint_dir), train_dataset=dataset)
    if trained is None:
        return None
    trainer, result = trained
    model = trainer.model if world_size() == 1 else \
        lora.load_model(run.out_dir, run.recipe.model.trust_remote_code).to(accelerator())
    margin_after = preference_margin(model.eval(), run.tokenizer, heldout, **margin)
    print(f"dpo: {len(dataset)} pairs; held-out margin {margin_before:.3f} -> {margin_after:.3f}")
    return {"train_loss": round(result.training_loss, 4), "steps": result.global_step, "pairs": len(dataset),
            "pairs_by_origin": dict(Counter(p.get("origin", "on_policy") for p in rows)),
            "heldout_margin_before": round(margin_before, 4), "heldout_margin_after": round(margin_after, 4),
            "log": step_log(trainer, ("loss", "learning_rate", "rewards/margins", "rewards/accuracies"))}


def run(recipe: Recipe, policy_dir: str | Path, pairs_dir: str | Path, out_dir: str | Path) -> dict:
    return stage.run(recipe, "dpo", {"policy": policy_dir, "pairs": pairs_dir}, out_dir, train)
