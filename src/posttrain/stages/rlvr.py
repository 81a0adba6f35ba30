"""rlvr stage: reinforcement learning with verifiable rewards: TRL's GRPOTrainer, or our compact PPO.

The reward is the verifier's verdict for the row's `dataset` (scaled by `verified_reward`), plus
`no_eos_penalty` for completions that never end.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from posttrain import sandbox
from posttrain.data.formats import FILES, read_rows
from posttrain.recipe import Recipe
from posttrain.reporting.report import render_progress
from posttrain.training import rlvr_batches, stage
from posttrain.training.trainer import has_gpu, world_size
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


def trainer_config(recipe: Recipe, output_dir: str | Path):
    """GRPOConfig writing checkpoints to `output_dir`."""
    from trl import GRPOConfig

    cfg = recipe.rlvr
    vllm = use_vllm(recipe)
    batches = rlvr_batches.derive(cfg, world_size())  # the recipe's global sizes, per device
    return GRPOConfig(**stage.trainer_arguments(
        recipe, "rlvr", output_dir,
        use_vllm=vllm,
        vllm_mode=cfg.vllm_mode,
        vllm_server_base_url=cfg.vllm_server_url if vllm and cfg.vllm_mode == "server" else None,
        vllm_gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
        vllm_max_model_length=cfg.vllm_max_model_length,
        vllm_enable_sleep_mode=cfg.vllm_enable_sleep_mode,
        beta=cfg.beta,
        epsilon=cfg.clip,
        num_generations=cfg.num_generations,
        per_device_train_batch_size=batches.per_device,
        gradient_accumulation_steps=batches.gradient_accumulation_steps,
        steps_per_generation=batches.steps_per_generation,
        max_steps=cfg.max_steps,
        temperature=cfg.temperature,
        max_completion_length=cfg.max_completion_length,
        logging_steps=cfg.logging_steps or max(1, cfg.max_steps // 100),  # None: up to ~100 points per curve
        # verifiable_reward, accuracy: accuracy is logged only, never trained on. A design constant, not a knob.
        reward_weights=[1.0, 0.0],
    ))


def grpo(run: stage.Run, rows: list[dict], verify=verify) -> list[dict] | None:
    from datasets import Dataset
    from trl import GRPOTrainer

    dataset = Dataset.from_list([{"prompt": r["messages"], "ground_truth": r["ground_truth"], "dataset": r["dataset"]}
                                 for r in rows])
    trained = run.fit(GRPOTrainer, trainer_config(run.recipe, run.checkpoint_dir), train_dataset=dataset,
                      reward_funcs=list(make_reward(run.recipe, run.tokenizer.eos_token_id, verify)))
    if trained is None:
        return None
    trainer, _ = trained
    return [h | {"accuracy": h.get("rewards/accuracy/mean")} for h in trainer.state.log_history if "reward" in h]


def ppo(run: stage.Run, rows: list[dict], verify=verify) -> list[dict]:
    from posttrain.reporting import progress, tracking
    from posttrain.training import ppo as algorithm
    from posttrain.training.devices import accelerator

    checkpointing = run.checkpointing()
    # PPO runs in one process on this pod's GPU in fp32 weights (the optimiser's master copy); generation and
    # losses follow the model's device (training/ppo/loop.py).
    history = algorithm.train(run.model.to(accelerator()), run.tokenizer, rows, verify,
                              algorithm.Settings.from_recipe(run.recipe),
                              on_step=progress.step_hook("rlvr", run.recipe.rlvr.max_steps, tracking.active()),
                              checkpoints=checkpointing)
    run.resumed_from = checkpointing.resumed_from
    run.model.save_pretrained(run.out_dir)
    return history


def train(run: stage.Run) -> dict | None:
    recipe = run.recipe
    rows = read_rows(run.inputs["data"] / FILES["rlvr"], "rlvr")
    sandbox.use(recipe.sandbox)  # code rows' programs run where the recipe says, or nowhere
    tally: Counter = Counter()
    history = (grpo if recipe.rlvr.algorithm == "grpo" else ppo)(run, rows, verify=counting(tally))
    if history is None:  # not rank 0 of a distributed run
        return None
    summary = {
        "algorithm": recipe.rlvr.algorithm,
        "steps": history[-1]["step"] if history else 0,
        "reward_first": round(history[0]["reward"], 4) if history else None,
        "reward_last": round(history[-1]["reward"], 4) if history else None,
        "by_dataset": dict(sorted(tally.items())),  # completions scored and verified right, per row `dataset`
        "log": [{k: h[k] for k in ("step", "reward", "accuracy", "kl", "completions/mean_length", "learning_rate",
                                   "loss") if k in h}
                for h in history],
        "sandbox": sandbox.isolation_used(recipe.sandbox),  # how model-written code was boxed; None: no code ran
    }
    (run.out_dir / "progress.html").write_text(render_progress(summary))
    print(f"rlvr: {recipe.rlvr.algorithm}, reward {summary['reward_first']} -> {summary['reward_last']}")
    return summary


def run(recipe: Recipe, policy_dir: str | Path, data_dir: str | Path, out_dir: str | Path) -> dict:
    return stage.run(recipe, "rlvr", {"policy": policy_dir, "data": data_dir}, out_dir, train)
