"""rlvr stage: reinforcement learning with verifiable rewards: TRL's GRPOTrainer, or our compact PPO.

The reward is the verifier's verdict for the row's `dataset` (scaled by `verified_reward`), plus
`no_eos_penalty` for completions that never end.
"""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from posttrain import sandbox

from posttrain.training import checkpoints, lora, rlvr_batches
from posttrain.data.formats import FILES, read_rows
from posttrain.recipe import Recipe
from posttrain.reporting.report import render_progress
from posttrain.training.trainer import (checkpoint_args, deepspeed_config, discard_checkpoints, has_gpu, train_resumably,
                                world_size)
from posttrain.store import finished, seal
from posttrain.verifiers import verify


def _text(completion) -> str:
    # Conversational rows give completions as message lists; plain rows as strings.
    return completion[-1]["content"] if isinstance(completion, list) else completion


def counting(tally: Counter):
    """`verify` that also counts, per row `dataset`, the completions scored and those verified right."""
    def verify_and_count(completions, dataset, ground_truth, **_) -> list[float]:
        scores = verify(completions, dataset=dataset, ground_truth=ground_truth)
        for name, score in zip(dataset, scores):
            tally[f"{name}/scored"] += 1
            tally[f"{name}/verified"] += score > 0
        return scores

    return verify_and_count


def make_reward(recipe: Recipe, eos_token_id: int, verify=verify):
    """TRL reward functions `(completions, **row_fields) -> list[float]`: the verifiable reward, and
    `accuracy` (the verifier's verdicts alone, weight 0: logged by TRL, never trained on, not re-verified)."""
    cfg = recipe.rlvr
    last: dict = {}

    def verifiable_reward(completions, dataset, ground_truth, completion_ids=None, **_) -> list[float]:
        scores = verify([_text(c) for c in completions], dataset=dataset, ground_truth=ground_truth)
        last.update(completions=completions, scores=scores)
        rewards = [cfg.verified_reward * s for s in scores]
        if cfg.no_eos_penalty and completion_ids is not None:
            rewards = [r + (cfg.no_eos_penalty if eos_token_id not in ids else 0.0)
                       for r, ids in zip(rewards, completion_ids)]
        return rewards

    def accuracy(completions, dataset, ground_truth, **_) -> list[float]:
        if last.get("completions") is completions:
            return last["scores"]
        return verify([_text(c) for c in completions], dataset=dataset, ground_truth=ground_truth)

    return verifiable_reward, accuracy


def use_vllm(recipe: Recipe) -> bool:
    """Whether GRPO generates its rollouts with vLLM: "on" (an error without it), "off", or "auto" (a GPU
    and an importable vLLM)."""
    mode = recipe.rlvr.vllm
    if mode == "off":
        return False
    from trl.import_utils import is_vllm_available

    available = has_gpu() and is_vllm_available()
    if mode == "on" and not available:
        raise RuntimeError("recipe.rlvr.vllm is on, but this machine has no GPU or no vLLM installed "
                           "(the gpu image has both)")
    return available


def trainer_config(recipe: Recipe, out_dir: Path):
    from trl import GRPOConfig

    cfg = recipe.rlvr
    vllm = use_vllm(recipe)
    batches = rlvr_batches.derive(cfg, world_size())  # the recipe's global sizes, per device
    return GRPOConfig(
        use_vllm=vllm,
        vllm_mode=cfg.vllm_mode,
        vllm_server_base_url=cfg.vllm_server_url if vllm and cfg.vllm_mode == "server" else None,
        vllm_gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
        output_dir=str(out_dir / "trainer"),
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup,
        beta=cfg.beta,
        num_generations=cfg.num_generations,
        per_device_train_batch_size=batches.per_device,
        gradient_accumulation_steps=batches.gradient_accumulation_steps,
        steps_per_generation=batches.steps_per_generation,
        max_steps=cfg.max_steps,
        temperature=cfg.temperature,
        max_completion_length=cfg.max_completion_length,
        seed=recipe.seed_for("rlvr"),
        **checkpoint_args(cfg.checkpoints),
        logging_steps=max(1, cfg.max_steps // 100),  # the progress plot gets up to ~100 points
        reward_weights=[1.0, 0.0],  # verifiable_reward, accuracy (logged only)
        report_to="none",
        use_cpu=not has_gpu(),
        bf16=has_gpu(),
        deepspeed=deepspeed_config(cfg.deepspeed),
    )


def grpo(recipe: Recipe, model, tokenizer, rows: list[dict], out_dir: Path, checkpoint_dir: Path | None = None,
         resumed: dict | None = None, mirror: str | None = None, verify=verify) -> list[dict]:
    from datasets import Dataset
    from trl import GRPOTrainer

    dataset = Dataset.from_list([{"prompt": r["messages"], "ground_truth": r["ground_truth"], "dataset": r["dataset"]}
                                 for r in rows])
    args = trainer_config(recipe, out_dir)
    args.output_dir = str(checkpoint_dir or out_dir / "trainer")
    trainer, _, resume = train_resumably("rlvr", GRPOTrainer, args, mirror, model=model, train_dataset=dataset,
                                         reward_funcs=list(make_reward(recipe, tokenizer.eos_token_id, verify)),
                                         processing_class=tokenizer)
    lora.save(trainer, out_dir)  # every rank: under ZeRO-3 the weights are gathered from all of them
    if not trainer.is_world_process_zero():
        return None
    if resumed is not None:
        resumed["checkpoint"] = resume
    return [h | {"accuracy": h.get("rewards/accuracy/mean")} for h in trainer.state.log_history if "reward" in h]


def ppo(recipe: Recipe, model, tokenizer, rows: list[dict], out_dir: Path, checkpoint_dir: Path | None = None,
        resumed: dict | None = None, mirror: str | None = None, verify=verify) -> list[dict]:
    from posttrain.training import ppo as algorithm

    cfg = recipe.rlvr
    settings = algorithm.Settings(
        learning_rate=cfg.learning_rate, beta=cfg.beta, batch_size=cfg.batch_size, max_steps=cfg.max_steps,
        warmup_steps=round(cfg.warmup if cfg.warmup >= 1 else cfg.warmup * cfg.max_steps),
        temperature=cfg.temperature, max_completion_length=cfg.max_completion_length,
        verified_reward=cfg.verified_reward, no_eos_penalty=cfg.no_eos_penalty, ppo_epochs=cfg.ppo_epochs,
        clip=cfg.clip, lam=cfg.gae_lambda, seed=recipe.seed_for("rlvr"))
    from posttrain.reporting import progress, tracking
    from posttrain.training.devices import accelerator

    saver = algorithm.Checkpoints(checkpoint_dir or out_dir / "trainer", cfg.checkpoints.every, cfg.checkpoints.keep,
                                  mirror)
    # PPO runs in one process on this pod's GPU in fp32 weights (the optimiser's master copy); generation and
    # losses follow the model's device (ppo.py).
    history = algorithm.train(model.to(accelerator()), tokenizer, rows, verify, settings,
                              on_step=progress.step_hook("rlvr", cfg.max_steps, tracking.active()), checkpoints=saver)
    if resumed is not None:
        resumed["checkpoint"] = saver.resumed_from
    model.save_pretrained(out_dir)
    return history


def run(recipe: Recipe, policy_dir: str | Path, data_dir: str | Path, out_dir: str | Path) -> dict:
    from transformers import AutoTokenizer

    start = time.perf_counter()
    policy_dir, data_dir, out_dir = Path(policy_dir), Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if done := finished(out_dir, "rlvr", recipe.digest(), {"policy": policy_dir, "data": data_dir}):
        return done["summary"]
    trust = recipe.model.trust_remote_code
    tokenizer = AutoTokenizer.from_pretrained(policy_dir, trust_remote_code=trust)
    model = lora.load_for_training(recipe, "rlvr", policy_dir)  # full weights, or a LoRA adapter on them
    rows = read_rows(data_dir / FILES["rlvr"], "rlvr")
    sandbox.use(recipe.sandbox)  # code rows' programs run where the recipe says, or nowhere
    checkpoint_dir = checkpoints.directory(recipe, "rlvr", {"policy": policy_dir, "data": data_dir}, out_dir)
    resumed: dict = {}
    mirror = checkpoints.remote(recipe, "rlvr", {"policy": policy_dir, "data": data_dir})
    tally: Counter = Counter()
    history = (grpo if recipe.rlvr.algorithm == "grpo" else ppo)(recipe, model, tokenizer, rows, out_dir,
                                                                  checkpoint_dir, resumed, mirror,
                                                                  verify=counting(tally))
    if history is None:  # not rank 0 of a distributed run
        return {}
    tokenizer.save_pretrained(out_dir)
    figures = lora.name_base(model, out_dir, policy_dir)  # an adapter names its base; parameters, peak memory
    summary = {
        "algorithm": recipe.rlvr.algorithm,
        "steps": history[-1]["step"] if history else 0,
        "reward_first": round(history[0]["reward"], 4) if history else None,
        "reward_last": round(history[-1]["reward"], 4) if history else None,
        "resumed_from": resumed["checkpoint"].name if resumed.get("checkpoint") else None,
        "resumed_from_path": str(resumed["checkpoint"]) if resumed.get("checkpoint") else None,
        "by_dataset": dict(sorted(tally.items())),  # completions scored and verified right, per row `dataset`
        "log": [{k: h[k] for k in ("step", "reward", "accuracy", "kl", "completions/mean_length", "learning_rate",
                                   "loss") if k in h}
                for h in history],
        "sandbox": sandbox.isolation_used(recipe.sandbox),  # how model-written code was boxed; None: no code ran
        **figures,
    }
    (out_dir / "progress.html").write_text(render_progress(summary))
    seconds = time.perf_counter() - start
    seal(out_dir, "rlvr", recipe.digest(), inputs={"policy": policy_dir, "data": data_dir}, summary=summary,
         seconds=seconds)
    discard_checkpoints(checkpoint_dir)  # after sealing: a kill in between still resumes, not restarts
    checkpoints.clean_stale(recipe, "rlvr")
    checkpoints.drop(mirror)
    print(f"rlvr: {recipe.rlvr.algorithm} {summary['steps']} steps, reward {summary['reward_first']} -> "
          f"{summary['reward_last']}; saved to {out_dir} in {seconds:.0f}s")
    return summary
