"""The one skeleton of a training stage (SFT, DPO, RLVR's GRPO and PPO).

`run` does what every training stage does, once: return the sealed summary when the output is already
finished for this recipe and these inputs; load the model and tokenizer from the first input; find the
checkpoint directory and its remote copy (the shared key, `training.checkpoints`); hand a `Run` to the stage's
`train`; then, on rank 0, save the tokenizer, seal the output with the summary, and only after sealing delete
the checkpoints (a kill in between still resumes, not restarts), the stale keys and the remote copy.

A stage supplies only `train(run) -> summary` (its dataset, its trainer config and its extra summary fields;
None off rank 0). A TRL stage builds its config from `trainer_arguments` (the one mapping from the recipe's
`Optimisation` section to trainer arguments) and trains with `Run.fit`; PPO runs its own loop with the same
`Checkpointing` (`Run.checkpointing`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from posttrain.recipe import Recipe
from posttrain.store import finished, seal
from posttrain.training import checkpoints, lora
from posttrain.training.trainer import (Checkpointing, checkpoint_args, deepspeed_config, discard_checkpoints, has_gpu,
                                        train_resumably)


def trainer_arguments(recipe: Recipe, stage: str, output_dir: str | Path, **own) -> dict:
    """Keyword arguments of a TRL config for `stage`: what its `Optimisation` section sets (learning rate,
    schedule, warmup, seed, clipping, logging, checkpoints, DeepSpeed), the precision this machine trains in
    (bf16 on a GPU, fp32 on CPU), checkpoints written to `output_dir`; then the stage's `own` arguments."""
    cfg = getattr(recipe, stage)
    shared = dict(
        output_dir=str(output_dir),
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup,
        seed=recipe.seed_for(stage),
        max_grad_norm=cfg.max_grad_norm,
        gradient_checkpointing=cfg.gradient_checkpointing,
        logging_steps=cfg.logging_steps,
        **checkpoint_args(cfg.checkpoints),
        report_to="none",
        use_cpu=not has_gpu(),
        bf16=has_gpu(),
        deepspeed=deepspeed_config(cfg.deepspeed),
    )
    return shared | own


def load_model(recipe: Recipe, stage: str, model_dir: Path):
    """(tokenizer, model) the stage trains: its input model (an adapter input merged onto its base), wrapped in
    a new LoRA adapter (4-bit base for QLoRA) when the stage's section has `lora` (training/lora.py)."""
    from transformers import AutoTokenizer

    return (AutoTokenizer.from_pretrained(model_dir, trust_remote_code=recipe.model.trust_remote_code),
            lora.load_for_training(recipe, stage, model_dir))


@dataclass
class Run:
    """What the skeleton hands a stage's `train`."""

    recipe: Recipe
    stage: str  # also the recipe section it trains with
    model: Any
    tokenizer: Any
    inputs: dict[str, Path]  # the stage's sealed inputs by name; the first holds the model
    out_dir: Path  # where the model, tokenizer and manifest go
    checkpoint_dir: Path  # `checkpoints.directory`: under the shared key, or <out_dir>/trainer
    mirror: str | None  # `checkpoints.remote`: the key's copy at cluster.checkpoint_url, or None
    resumed_from: Path | None = None  # set by `fit` / the stage: the checkpoint training resumed from
    figures: dict | None = None  # set by `fit`: trainable and total parameters, peak memory (lora.parameters)

    @property
    def model_input(self) -> Path:  # the input holding the model it trains (an adapter's base)
        return next(iter(self.inputs.values()))

    def checkpointing(self) -> Checkpointing:
        """This stage's checkpoint policy, from its recipe section's `checkpoints`."""
        return Checkpointing.of(getattr(self.recipe, self.stage).checkpoints, self.checkpoint_dir, self.mirror)

    def fit(self, trainer_class, args, **kwargs):
        """Train `trainer_class` on the model resumably and save the model into `out_dir` (every rank: under
        ZeRO-3 the weights are gathered from all of them). Returns (trainer, train output) on rank 0, else None."""
        trainer, result, self.resumed_from = train_resumably(self.stage, trainer_class, args, self.checkpointing(),
                                                             model=self.model, processing_class=self.tokenizer,
                                                             **kwargs)
        # full weights, or the adapter naming its base (without TRL's reference copy)
        self.figures = lora.save(trainer, self.out_dir, self.model_input)
        return (trainer, result) if trainer.is_world_process_zero() else None


def run(recipe: Recipe, stage: str, inputs: dict[str, str | Path], out_dir: str | Path,
        train: Callable[[Run], dict | None]) -> dict:
    """Run training stage `stage` (see the module docstring); returns its summary ({} off rank 0)."""
    start = time.perf_counter()
    inputs, out_dir = {name: Path(path) for name, path in inputs.items()}, Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if done := finished(out_dir, stage, recipe.digest(), inputs):
        return done["summary"]
    lora.reset_peak_memory()  # the summary's peak is this stage's, also where one process runs several
    tokenizer, model = load_model(recipe, stage, next(iter(inputs.values())))
    current = Run(recipe, stage, model, tokenizer, inputs, out_dir,
                  checkpoint_dir=checkpoints.directory(recipe, stage, inputs, out_dir),
                  mirror=checkpoints.remote(recipe, stage, inputs))
    summary = train(current)
    if summary is None:  # not rank 0 of a distributed run
        return {}
    tokenizer.save_pretrained(out_dir)
    if current.figures is None:  # saved by the stage's own loop (PPO: full weights only)
        current.figures = lora.name_base(current.model, out_dir, current.model_input)
    summary |= current.figures | {"resumed_from": current.resumed_from.name if current.resumed_from else None,
                "resumed_from_path": str(current.resumed_from) if current.resumed_from else None}
    seconds = time.perf_counter() - start
    seal(out_dir, stage, recipe.digest(), inputs=inputs, summary=summary, seconds=seconds)
    discard_checkpoints(current.checkpoint_dir)  # after sealing: a kill in between still resumes, not restarts
    checkpoints.clean_stale(recipe, stage)
    checkpoints.drop(current.mirror)
    print(f"{stage}: {summary['steps']} steps; saved to {out_dir} in {seconds:.0f}s")
    return summary
