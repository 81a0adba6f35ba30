"""sft stage: supervised fine-tuning with TRL's SFTTrainer, loss on the assistant's tokens only."""
from __future__ import annotations

import time
from pathlib import Path

from posttrain.training import checkpoints, lora
from posttrain.data.formats import FILES, read_rows
from posttrain.recipe import Recipe
from posttrain.store import finished, seal
from posttrain.training.trainer import (bucketed, checkpoint_args, deepspeed_config, discard_checkpoints, has_gpu,
                                step_log, train_resumably)


def trainer_config(recipe: Recipe, out_dir: Path):
    from trl import SFTConfig

    cfg = recipe.sft
    return SFTConfig(
        output_dir=str(out_dir / "trainer"),
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        max_length=cfg.max_length,
        packing=cfg.packing,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        assistant_only_loss=True,
        seed=recipe.seed_for("sft"),
        **checkpoint_args(cfg.checkpoints),
        logging_steps=0.02,  # every 2% of the steps: ~50 points per curve, and some on a 3-step test run
        report_to="none",
        use_cpu=not has_gpu(),
        bf16=has_gpu(),
        deepspeed=deepspeed_config(cfg.deepspeed),
    )


def run(recipe: Recipe, base_dir: str | Path, data_dir: str | Path, out_dir: str | Path) -> dict:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    start = time.perf_counter()
    base_dir, data_dir, out_dir = Path(base_dir), Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if done := finished(out_dir, "sft", recipe.digest(), {"base": base_dir, "data": data_dir}):
        return done["summary"]
    trust = recipe.model.trust_remote_code
    tokenizer = AutoTokenizer.from_pretrained(base_dir, trust_remote_code=trust)
    model = lora.load_for_training(recipe, "sft", base_dir)  # full weights, or a LoRA adapter on them
    dataset = Dataset.from_list([{"messages": r["messages"]} for r in read_rows(data_dir / FILES["sft"], "sft")])
    args = trainer_config(recipe, out_dir)
    args.output_dir = str(checkpoints.directory(recipe, "sft", {"base": base_dir, "data": data_dir}, out_dir))
    mirror = checkpoints.remote(recipe, "sft", {"base": base_dir, "data": data_dir})
    trainer, result, resume = train_resumably("sft", bucketed(SFTTrainer, recipe.sft.length_bucket), args, mirror,
                                              model=model, train_dataset=dataset, processing_class=tokenizer)
    figures = lora.save(trainer, out_dir, base_dir)  # every rank: under ZeRO-3 the weights are gathered from all
    if not trainer.is_world_process_zero():
        return {}
    tokenizer.save_pretrained(out_dir)
    summary = {"train_loss": round(result.training_loss, 4), "steps": result.global_step, "rows": len(dataset),
               "resumed_from": resume.name if resume else None,
               "resumed_from_path": str(resume) if resume else None,
               "log": step_log(trainer, ("loss", "learning_rate", "grad_norm")),  # the report's training curves
               **figures}  # trainable parameters, peak memory
    seconds = time.perf_counter() - start
    seal(out_dir, "sft", recipe.digest(), inputs={"base": base_dir, "data": data_dir}, summary=summary,
         seconds=seconds)
    discard_checkpoints(args.output_dir)  # after sealing: a kill in between still resumes, not restarts
    checkpoints.clean_stale(recipe, "sft")
    checkpoints.drop(mirror)
    print(f"sft: {summary['steps']} steps, loss {summary['train_loss']}, model saved to {out_dir} in {seconds:.0f}s")
    return summary
