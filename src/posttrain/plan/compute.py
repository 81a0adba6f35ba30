"""Tokens, FLOPs, GPU-hours, wall time and cost of each stage, and its checkpoints against the grace period.

All formulas (no tracing): training costs 6 FLOPs per parameter per token (forward 2, backward 4: gradients
of the inputs and of the weights), plus 2 for the forward's recomputation under gradient checkpointing; a
stage training a LoRA adapter computes no gradients of the frozen weights, 4 (6 checkpointed); a forward-only pass (reference log-probs, generation,
the margin pass) costs 2. GPU-hours = FLOPs / (GPU peak x recipe.cluster.mfu). Token counts come from the
data stage's files where given (characters / 4 per token, capped at the stage's max length), else from the
recipe's declared sizes: its synthetic row counts, and the released mixtures' row counts below; each row is
then taken at the stage's max length (an upper bound: the plan says so).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from posttrain.recipe import Recipe

# Rows of the released Tülu 3 mixtures the 8B recipe names (their Hugging Face dataset cards, train split).
RELEASED_ROWS = {
    "allenai/tulu-3-sft-mixture": 939_343,
    "allenai/llama-3.1-tulu-3-8b-preference-mixture": 272_898,
    "allenai/RLVR-GSM-MATH-IF-Mixed-Constraints": 29_946,
}
CHECKPOINT_BYTES_PER_PARAMETER = 14  # bf16 weights 2 + fp32 master weights 4 + Adam's moments 8 (ZeRO layout)
CHECKPOINT_BYTES_PER_ADAPTER_PARAMETER = 12  # a LoRA checkpoint: the fp32 adapter 4 + Adam's moments 8


@dataclass(frozen=True)
class Rows:
    count: int
    mean_tokens: float | None  # None: unknown, the stage's max length is assumed
    measured: bool


def rows(recipe: Recipe, kind: str, data_dir: Path | None) -> Rows:
    """Rows of one training set (`sft`, `preference`, `rlvr`)."""
    if data_dir is not None:
        name = {"sft": "sft.jsonl", "preference": "preference.jsonl", "rlvr": "rlvr.jsonl"}[kind]
        path = Path(data_dir) / name
        if path.is_file():
            lengths = [len(line) / 4 for line in path.read_text().splitlines() if line.strip()]
            pairs = Path(data_dir) / "preference_pairs.jsonl"
            if kind == "preference" and pairs.is_file():
                lengths += [len(line) / 8 for line in pairs.read_text().splitlines() if line.strip()]  # two sides
            return Rows(len(lengths), sum(lengths) / len(lengths) if lengths else 0.0, True)
    declared = {"sft": recipe.data.sft_rows, "preference": recipe.data.preference_prompts,
                "rlvr": recipe.data.rlvr_prompts}[kind]
    for source in recipe.data.sources:
        if source.kind == kind:
            declared += source.rows or int((source.fraction or 0) * RELEASED_ROWS.get(source.path, 0))
    return Rows(declared, None, False)


def tokens_per_row(found: Rows, max_length: int) -> float:
    return min(found.mean_tokens, max_length) if found.mean_tokens is not None else max_length


@dataclass
class Compute:
    tokens: float  # trained tokens (generated ones for a stage that only generates)
    flops: float
    gpu_hours: float
    wall_hours: float
    cost_usd: float
    checkpoint_bytes: float
    checkpoint_write_s: float
    checkpoint_minutes: float | None  # time between periodic checkpoints; None: only on SIGTERM


def training_flops(parameters: int, tokens: float, checkpointed: bool, frozen: bool = False) -> float:
    """`frozen`: the weights are a LoRA adapter's frozen base (no weight gradients)."""
    return ((8 if checkpointed else 6) - (2 if frozen else 0)) * parameters * tokens


def stage_flops(recipe: Recipe, stage: str, parameters: int, data_dir: Path | None,
                frozen: bool = False) -> tuple[float, float]:
    """(tokens, FLOPs) of a stage; `frozen`: it trains a LoRA adapter on frozen weights."""
    p = parameters
    if stage == "sft":
        cfg = recipe.sft
        found = rows(recipe, "sft", data_dir)
        tokens = found.count * cfg.epochs * tokens_per_row(found, cfg.max_length)
        return tokens, training_flops(p, tokens, cfg.gradient_checkpointing, frozen)
    if stage == "dpo":
        cfg = recipe.dpo
        found = rows(recipe, "preference", data_dir)
        pairs = found.count * (1 - recipe.preference.heldout_fraction)
        tokens = pairs * cfg.epochs * 2 * tokens_per_row(found, cfg.max_length)
        heldout = found.count * recipe.preference.heldout_fraction * 2 * tokens_per_row(found, cfg.max_length)
        # training + the reference's log-probs once + the margin pass before and after
        return tokens, training_flops(p, tokens, cfg.gradient_checkpointing, frozen) + 2 * p * tokens / cfg.epochs \
            + 2 * (2 * p * heldout)
    if stage == "rlvr":
        cfg = recipe.rlvr
        completions = cfg.max_steps * cfg.batch_size
        length = cfg.vllm_max_model_length or 2 * cfg.max_completion_length
        tokens = completions * length
        generated = 2 * p * completions * cfg.max_completion_length
        reference = 2 * p * tokens if cfg.beta else 0.0
        trained = training_flops(p, tokens, cfg.gradient_checkpointing, frozen) * (cfg.ppo_epochs * 2 if cfg.algorithm == "ppo"
                                                                            else 1)  # PPO: + value model, epochs
        return tokens, trained + generated + reference
    if stage == "preference" and recipe.data.preference_prompts:
        cfg = recipe.preference
        tokens = recipe.data.preference_prompts * cfg.samples_per_prompt * cfg.max_new_tokens
        return tokens, 2 * p * tokens
    return 0.0, 0.0


def plan(recipe: Recipe, stage: str, parameters: int, data_dir: Path | None, adapter: int = 0) -> Compute:
    """`adapter`: the parameters of the LoRA adapter the stage trains (0: it trains all `parameters`)."""
    res = getattr(recipe.cluster, stage)
    gpus = max(1, res.gpus) * res.nodes
    tokens, flops = stage_flops(recipe, stage, parameters, data_dir, frozen=bool(adapter))
    gpu_hours = flops / (res.gpu_tflops * 1e12 * recipe.cluster.mfu) / 3600 if res.gpus else 0.0
    wall = gpu_hours / gpus
    training = stage in ("sft", "dpo", "rlvr")
    size = (CHECKPOINT_BYTES_PER_ADAPTER_PARAMETER * adapter if adapter else CHECKPOINT_BYTES_PER_PARAMETER
            * parameters) if training else 0.0
    write = size / (recipe.cluster.checkpoint_write_gbps * 1e9 * res.nodes) if training else 0.0
    minutes = None
    if training:
        ckpt = getattr(recipe, stage).checkpoints
        candidates = [ckpt.every_minutes] if ckpt.every_minutes else []
        steps = _optimizer_steps(recipe, stage, tokens)
        if ckpt.every and steps:
            candidates.append(wall * 60 * ckpt.every / steps)
        minutes = min(candidates) if candidates else None
    return Compute(tokens, flops, gpu_hours, wall, gpu_hours * res.gpu_hour_usd, size, write, minutes)


def _optimizer_steps(recipe: Recipe, stage: str, tokens: float) -> float:
    if stage == "rlvr":
        return recipe.rlvr.max_steps
    cfg = getattr(recipe, stage)
    res = getattr(recipe.cluster, stage)
    per_step = cfg.batch_size * cfg.gradient_accumulation_steps * max(1, res.gpus) * res.nodes * cfg.max_length
    return tokens / per_step / (2 if stage == "dpo" else 1)

