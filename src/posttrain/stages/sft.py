"""sft stage: supervised fine-tuning with TRL's SFTTrainer, loss on the assistant's tokens only."""
from __future__ import annotations

from pathlib import Path

from posttrain.data.formats import FILES, read_rows
from posttrain.recipe import Recipe
from posttrain.training import stage
from posttrain.training.trainer import bucketed, step_log


def trainer_config(recipe: Recipe, output_dir: str | Path):
    """SFTConfig writing checkpoints to `output_dir`."""
    from trl import SFTConfig

    cfg = recipe.sft
    return SFTConfig(**stage.trainer_arguments(
        recipe, "sft", output_dir,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        max_length=cfg.max_length,
        packing=cfg.packing,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        assistant_only_loss=True,
    ))


def train(run: stage.Run) -> dict | None:
    from datasets import Dataset
    from trl import SFTTrainer

    rows = read_rows(run.inputs["data"] / FILES["sft"], "sft")
    dataset = Dataset.from_list([{"messages": r["messages"]} for r in rows])
    trained = run.fit(bucketed(SFTTrainer, run.recipe.sft.length_bucket), trainer_config(run.recipe, run.checkpoint_dir),
                      train_dataset=dataset)
    if trained is None:
        return None
    trainer, result = trained
    print(f"sft: loss {result.training_loss:.4f}")
    return {"train_loss": round(result.training_loss, 4), "steps": result.global_step, "rows": len(dataset),
            "log": step_log(trainer, ("loss", "learning_rate", "grad_norm"))}  # the report's training curves


def run(recipe: Recipe, base_dir: str | Path, data_dir: str | Path, out_dir: str | Path) -> dict:
    return stage.run(recipe, "sft", {"base": base_dir, "data": data_dir}, out_dir, train)
