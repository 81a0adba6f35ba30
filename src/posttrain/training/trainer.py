"""What every training stage shares: resumable checkpoints, a finite-loss guard, graceful SIGTERM.

Checkpoints are the trainer's own (`checkpoint-N`: weights, optimizer, scheduler, RNG states, data
position; PPO writes its own files in the same layout, training/ppo/persistence.py). After each one is
whole a `COMPLETED` marker is written with the sha256 of every file; resume takes the newest checkpoint
whose marker exists and whose files still match it, so a checkpoint cut off by a kill, or a file truncated
later, is skipped in favour of the previous one.
"""
from __future__ import annotations

import math
import os
import shutil
import signal
import time
from pathlib import Path

from transformers import TrainerCallback

from posttrain.reporting import progress
# The marker and its checks live with the checkpoints' other rules; re-exported for the stages and tests.
from posttrain.training.checkpoints import MARKER, is_complete, latest_complete, mark_complete, pull, push  # noqa: F401
from posttrain.training.checkpoints import numbered
from posttrain.training.checkpoints import numbered as checkpoints  # noqa: F401

class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or infinite loss."""


class Preempted(RuntimeError):
    """Training stopped on SIGTERM after saving a checkpoint; a rerun resumes from it."""


class Checkpointing(TrainerCallback):
    """The one checkpoint policy of every training stage, TRL's trainers and PPO alike: when to save (every
    `every` optimizer steps, every `every_minutes` of wall clock, and at the step a SIGTERM arrives), what makes
    a saved checkpoint count (its `COMPLETED` marker, then its copy at `mirror`, the newest `keep` kept), where
    a run resumes (the newest whole checkpoint, fetched from `mirror` when that is newer), and the `Preempted`
    stop. As a trainer callback it drives TRL's saving; PPO's loop asks `due` and calls `saved` itself."""

    def __init__(self, directory: str | Path, every: int = 0, every_minutes: float = 0.0, keep: int = 2,
                 mirror: str | None = None):
        self.directory, self.every, self.every_minutes = Path(directory), every, every_minutes
        self.keep, self.mirror = keep, mirror  # checkpoints.push each complete checkpoint there
        self.terminated = False
        self.resumed_from: Path | None = None
        self.last_save = time.monotonic()

    @classmethod
    def of(cls, section, directory: str | Path, mirror: str | None = None) -> "Checkpointing":
        """The policy a recipe's `checkpoints` section describes."""
        return cls(directory, section.every, section.every_minutes, section.keep, mirror)

    def install_signal_handler(self) -> None:
        def on_term(signum, frame):  # the grace period is short: finish this step, save, stop
            self.terminated = True

        signal.signal(signal.SIGTERM, on_term)

    def resume_point(self) -> Path | None:
        """The newest whole checkpoint to resume from (fetched from `mirror` first when that has a newer one)."""
        if self.mirror:
            if world_size() > 1:
                from accelerate import PartialState

                state = PartialState()
                with state.local_main_process_first():  # one process per node fetches, the others wait for it
                    if state.is_local_main_process:
                        pull(self.mirror, self.directory)
            else:
                pull(self.mirror, self.directory)
        self.resumed_from = latest_complete(self.directory)
        return self.resumed_from

    def _minutes_passed(self) -> bool:
        if not self.every_minutes:
            return False
        return _agreed(time.monotonic() - self.last_save >= self.every_minutes * 60)

    def due(self, step: int) -> bool:
        """Whether to save after optimizer step `step` (PPO; TRL's trainer decides `every` steps itself)."""
        minutes = self._minutes_passed()  # first: every rank takes part in its broadcast
        return self.terminated or bool(self.every and step % self.every == 0) or minutes

    def saved(self, checkpoint: Path, step: int, main_process: bool = True) -> None:
        """A checkpoint's files are all written: mark it whole, copy it out, drop the oldest beyond `keep`."""
        self.last_save = time.monotonic()
        if checkpoint.is_dir() and main_process:  # one marker, written by rank 0
            mark_complete(checkpoint, step)
            if self.mirror:
                push(checkpoint, self.mirror, self.keep)
            for old in numbered(self.directory)[self.keep:]:
                shutil.rmtree(old, ignore_errors=True)

    def stop_if_preempted(self, stage: str, step: int) -> None:
        if self.terminated:
            raise Preempted(f"{stage}: stopped by SIGTERM at step {step}; checkpoint saved in {self.directory}, "
                            "rerun to resume")

    def on_step_end(self, args, state, control, **kwargs):
        if self._minutes_passed() or self.terminated:  # the clock first: every rank takes part in its broadcast
            control.should_save = True
        if self.terminated:
            control.should_training_stop = True
        return control

    def on_save(self, args, state, control, **kwargs):
        self.saved(Path(args.output_dir) / f"checkpoint-{state.global_step}", state.global_step,
                   state.is_world_process_zero)
        return control


def _agreed(flag: bool) -> bool:
    """Rank 0's `flag` on every rank of a distributed run: a wall-clock decision must not differ between
    ranks, or one would save (a collective under ZeRO) while the others go on."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else "cpu"
    value = torch.tensor([float(flag)], device=device)
    dist.broadcast(value, 0)
    return bool(value.item())


def check_finite(loss: float, step: int, checkpoint_dir: str | Path | None) -> None:
    """Raise `NonFiniteLoss` at the first NaN or infinite loss, before an optimizer step or a checkpoint uses it."""
    if not math.isfinite(loss):
        last = latest_complete(checkpoint_dir) if checkpoint_dir else None
        raise NonFiniteLoss(f"loss is {loss} at step {step}; last good checkpoint: {last or 'none'}")


class FiniteLossGuard:
    """Trainer mixin: `check_finite` on every training step's loss."""

    def training_step(self, *args, **kwargs):
        loss = super().training_step(*args, **kwargs)
        check_finite(loss.detach().float().item(), self.state.global_step + 1, self.args.output_dir)
        return loss


def world_size() -> int:
    """Processes in this training run (torchrun sets WORLD_SIZE); 1 outside a distributed launch."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def deepspeed_config(zero: str) -> dict | None:
    """A DeepSpeed config for ZeRO stage 2 or 3 ("zero2", "zero3"), or None for "none". "auto" values are
    filled in by transformers from the trainer's arguments (batch sizes, clipping, bf16), so the recipe
    stays the one place those are set. ZeRO-3 gathers the full weights when the model is saved."""
    if zero == "none":
        return None
    stage = {"zero2": 2, "zero3": 3}[zero]
    optimization = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True, "reduce_bucket_size": "auto"}
    if stage == 3:
        optimization |= {"stage3_prefetch_bucket_size": "auto", "stage3_param_persistence_threshold": "auto",
                         "stage3_gather_16bit_weights_on_model_save": True, "sub_group_size": 1e9}
    return {"bf16": {"enabled": "auto"}, "zero_optimization": optimization, "gradient_clipping": "auto",
            "gradient_accumulation_steps": "auto", "train_batch_size": "auto",
            "train_micro_batch_size_per_gpu": "auto", "steps_per_print": 1e9}


def has_gpu() -> bool:
    """Train on the accelerator in bf16 when there is one; on CPU in fp32."""
    import torch

    return torch.cuda.is_available()


def discard_checkpoints(root: str | Path) -> None:
    """Delete a finished run's checkpoints: they exist for resuming, they are not part of the model."""
    shutil.rmtree(root, ignore_errors=True)


def bucketed(trainer_class, width: int):
    """`trainer_class` whose length-grouped batches group by length rounded up to `width` tokens: rows of
    one bucket stay in random order, so batches of similar-length rows are still mixed (not, say, one
    template per batch), while short and long rows stop padding each other. `width` 0: exact lengths."""
    if not width:
        return trainer_class

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy != "group_by_length":
            return trainer_class._get_train_sampler(self, train_dataset)
        from transformers.trainer_pt_utils import LengthGroupedSampler

        lengths = [-(-len(ids) // width) * width for ids in dataset["input_ids"]]
        return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                    dataset=dataset, lengths=lengths)

    return type(f"Bucketed{trainer_class.__name__}", (trainer_class,), {"_get_train_sampler": _get_train_sampler})


def guarded(trainer_class):
    """`trainer_class` with the finite-loss guard."""
    return type(f"Guarded{trainer_class.__name__}", (FiniteLossGuard, trainer_class), {})


def checkpoint_args(checkpoints) -> dict:
    """Trainer arguments for a recipe's `checkpoints` section (`every` 0: only on SIGTERM)."""
    return {"save_strategy": "steps" if checkpoints.every else "no", "save_steps": checkpoints.every or None,
            "save_total_limit": checkpoints.keep}


def train_resumably(stage: str, trainer_class, args, checkpointing: Checkpointing, **kwargs):
    """Build `trainer_class` (with the finite-loss guard and `checkpointing`), resume from the newest whole
    checkpoint under `args.output_dir` if there is one, and train. Returns (trainer, train output, the
    checkpoint resumed from or None); raises `Preempted` after a SIGTERM, once the checkpoint is saved."""
    resume = checkpointing.resume_point()
    checkpointing.install_signal_handler()
    from posttrain.reporting import tracking

    trainer = guarded(trainer_class)(args=args, callbacks=[checkpointing, StepLog(stage, tracking.active())], **kwargs)
    if resume:
        print(f"{stage}: resuming from {resume}")
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    checkpointing.stop_if_preempted(stage, trainer.state.global_step)
    return trainer, result, resume


def step_log(trainer, keys: tuple[str, ...]) -> list[dict]:
    """The trainer's per-step logs, reduced to `keys` (the report's training curves)."""
    return [{k: round(h[k], 6) if isinstance(h[k], float) else h[k] for k in ("step", *keys) if k in h}
            for h in trainer.state.log_history if any(k in h for k in keys) and "train_runtime" not in h]


class StepLog(TrainerCallback):
    """Forwards each trainer log (loss, learning rate, reward, KL, length...) to the progress file and the
    experiment tracker, and reports the step after every optimizer step. Rank 0 only."""

    def __init__(self, stage: str, tracker=None):
        self.stage, self.tracker, self.latest = stage, tracker, {}

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            progress.report(self.stage, state.global_step, state.max_steps, self.latest)
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return control
        values = progress.numbers(logs)
        values.pop("epoch", None)
        self.latest = {**self.latest, **values}
        progress.report(self.stage, state.global_step, state.max_steps, self.latest)
        if self.tracker is not None:
            self.tracker.log_metrics(values, step=state.global_step)
        return control
