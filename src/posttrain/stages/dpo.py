"""dpo stage: TRL DPOTrainer with the length-normalised loss, the SFT model as (frozen) reference.

Reports the chosen-vs-rejected log-prob margin on held-out pairs before and after training.
"""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from posttrain.training import checkpoints, lora
from posttrain.data.formats import read_rows
from posttrain.training.logprobs import preference_margin
from posttrain.recipe import Recipe
from posttrain.training.trainer import (checkpoint_args, deepspeed_config, discard_checkpoints, has_gpu, step_log,
                                train_resumably, world_size)
from posttrain.store import finished, seal


def trainer_config(recipe: Recipe, out_dir: Path):
    from trl import DPOConfig

    cfg = recipe.dpo
    losses = {cfg.loss_type: 1.0, **({"sft": cfg.sft_weight} if cfg.sft_weight else {})}
    return DPOConfig(
        output_dir=str(out_dir / "trainer"),
        loss_type=list(losses),
        loss_weights=list(losses.values()),
        beta=cfg.beta,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        max_length=cfg.max_length,
        precompute_ref_log_probs=True,  # the reference is frozen: score it once, not every step
        seed=recipe.seed_for("dpo"),
        **checkpoint_args(cfg.checkpoints),
        logging_steps=0.02,  # every 2% of the steps: ~50 points per curve, and some on a 3-step test run
        report_to="none",
        use_cpu=not has_gpu(),
        bf16=has_gpu(),
        deepspeed=deepspeed_config(cfg.deepspeed),
    )


def to_trl(pair: dict) -> dict:
    """Tülu rows (full conversations) to TRL's explicit-prompt conversational format."""
    return {"prompt": pair["chosen"][:-1], "chosen": pair["chosen"][-1:], "rejected": pair["rejected"][-1:]}


def run(recipe: Recipe, policy_dir: str | Path, pairs_dir: str | Path, out_dir: str | Path) -> dict:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOTrainer

    start = time.perf_counter()
    policy_dir, pairs_dir, out_dir = Path(policy_dir), Path(pairs_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if done := finished(out_dir, "dpo", recipe.digest(), {"policy": policy_dir, "pairs": pairs_dir}):
        return done["summary"]
    trust = recipe.model.trust_remote_code
    tokenizer = AutoTokenizer.from_pretrained(policy_dir, trust_remote_code=trust)
    model = lora.load_for_training(recipe, "dpo", policy_dir)  # full weights, or a LoRA adapter on them
    rows = read_rows(pairs_dir / "pairs.jsonl", "preference")
    train = Dataset.from_list([to_trl(p) for p in rows])
    heldout = read_rows(pairs_dir / "heldout_pairs.jsonl", "preference")
    from posttrain.training.devices import accelerator

    # On this process's GPU, where the trainer puts the model anyway; logprobs.py builds its inputs there.
    margin_before = preference_margin(model.to(accelerator()).eval(), tokenizer, heldout)
    args = trainer_config(recipe, out_dir)
    args.output_dir = str(checkpoints.directory(recipe, "dpo", {"policy": policy_dir, "pairs": pairs_dir}, out_dir))
    mirror = checkpoints.remote(recipe, "dpo", {"policy": policy_dir, "pairs": pairs_dir})
    trainer, result, resume = train_resumably("dpo", DPOTrainer, args, mirror, model=model, train_dataset=train,
                                              processing_class=tokenizer)
    figures = lora.save(trainer, out_dir, policy_dir)  # every rank: under ZeRO-3 the weights are gathered from all
    if not trainer.is_world_process_zero():
        return {}
    tokenizer.save_pretrained(out_dir)
    trained = trainer.model if world_size() == 1 else lora.load_model(out_dir, trust).to(accelerator())
    margin_after = preference_margin(trained.eval(), tokenizer, heldout)
    summary = {"train_loss": round(result.training_loss, 4), "steps": result.global_step, "pairs": len(train),
               "pairs_by_origin": dict(Counter(p.get("origin", "on_policy") for p in rows)),
               "resumed_from": resume.name if resume else None,
               "resumed_from_path": str(resume) if resume else None,
               "heldout_margin_before": round(margin_before, 4), "heldout_margin_after": round(margin_after, 4),
               "log": step_log(trainer, ("loss", "learning_rate", "rewards/margins", "rewards/accuracies")), **figures}
    seconds = time.perf_counter() - start
    seal(out_dir, "dpo", recipe.digest(), inputs={"policy": policy_dir, "pairs": pairs_dir}, summary=summary,
         seconds=seconds)
    discard_checkpoints(args.output_dir)  # after sealing: a kill in between still resumes, not restarts
    checkpoints.clean_stale(recipe, "dpo")
    checkpoints.drop(mirror)
    print(f"dpo: {summary['steps']} steps on {len(train)} pairs; held-out margin "
          f"{margin_before:.3f} -> {margin_after:.3f}; saved to {out_dir} in {seconds:.0f}s")
    return summary
