"""PPO's rollout and update loop.

One step: sample a completion per prompt from the policy; score it with the verifier (`verified_reward`
when right, `no_eos_penalty` when it never ends); per-token rewards are minus `beta` times the KL estimate
to the frozen reference, with the verifier's reward added on the last token; a value model (the policy's
backbone with a scalar head) gives GAE advantages; then `ppo_epochs` passes of the clipped policy loss and
the clipped value loss.
"""
from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass

import torch

from posttrain.recipe import Recipe, RLVRSection
from posttrain.training.ppo import persistence
from posttrain.training.ppo.maths import ValueModel, gae, kl_estimate, policy_loss, token_logprobs, value_loss, whiten
from posttrain.training.trainer import Checkpointing, check_finite


def _default(name: str):
    return RLVRSection.model_fields[name].default  # the recipe is where defaults live


@dataclass
class Settings:
    """PPO's settings; `from_recipe` reads them from `recipe.rlvr` (tests build them directly)."""

    learning_rate: float
    beta: float
    batch_size: int
    max_steps: int
    temperature: float
    max_completion_length: int
    verified_reward: float
    no_eos_penalty: float
    warmup_steps: int = 0  # RL steps over which the learning rate rises (ppo_epochs optimizer updates each)
    lr_scheduler: str = _default("lr_scheduler")  # transformers' get_scheduler name
    ppo_epochs: int = _default("ppo_epochs")
    clip: float = _default("clip")
    value_clip: float = _default("value_clip")
    gamma: float = _default("gamma")
    lam: float = _default("gae_lambda")
    value_coef: float = _default("value_coef")
    max_grad_norm: float = _default("max_grad_norm")  # 0: no clipping
    log_every: int = 10  # RL steps between printed lines
    seed: int = 0

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> "Settings":
        cfg = recipe.rlvr
        every = cfg.logging_steps or max(1, cfg.max_steps // 100)
        return cls(learning_rate=cfg.learning_rate, lr_scheduler=cfg.lr_scheduler, beta=cfg.beta,
                   batch_size=cfg.batch_size, max_steps=cfg.max_steps,
                   warmup_steps=round(cfg.warmup if cfg.warmup >= 1 else cfg.warmup * cfg.max_steps),
                   temperature=cfg.temperature, max_completion_length=cfg.max_completion_length,
                   verified_reward=cfg.verified_reward, no_eos_penalty=cfg.no_eos_penalty, ppo_epochs=cfg.ppo_epochs,
                   clip=cfg.clip, value_clip=cfg.value_clip, gamma=cfg.gamma, lam=cfg.gae_lambda,
                   value_coef=cfg.value_coef, max_grad_norm=cfg.max_grad_norm,
                   log_every=math.ceil(every * cfg.max_steps) if every < 1 else int(every),
                   seed=recipe.seed_for("rlvr"))


def rollout(policy, reference, critic, tokenizer, batch: list[dict], reward_fn, cfg: Settings, amp) -> dict:
    """Sample one completion per row of `batch` and score it: tokens, masks, old log-probs and values,
    per-token rewards, whitened advantages and returns."""
    device = policy.device
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    prompts = [tokenizer.apply_chat_template(r["messages"], tokenize=False, add_generation_prompt=True) for r in batch]
    enc = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    enc = {key: value.to(device) for key, value in enc.items()}
    policy.eval()
    with torch.no_grad(), amp():
        out = policy.generate(**enc, do_sample=True, temperature=cfg.temperature, top_k=0,
                              max_new_tokens=cfg.max_completion_length, pad_token_id=pad, eos_token_id=eos)
    start = enc["input_ids"].shape[1]
    response = out[:, start:]
    # Response tokens up to and including the first EOS.
    is_eos = response == eos
    ended = is_eos.any(1)
    first_eos = torch.where(ended, is_eos.float().argmax(1), torch.full_like(ended, response.shape[1], dtype=torch.long))
    positions = torch.arange(response.shape[1], device=device)[None]
    mask = (positions <= first_eos[:, None]).float() * (positions < response.shape[1]).float()
    attention = torch.cat([enc["attention_mask"], mask.long()], 1)
    texts = tokenizer.batch_decode(response, skip_special_tokens=True)
    verdict = torch.tensor(reward_fn(texts, dataset=[r["dataset"] for r in batch],
                                     ground_truth=[r["ground_truth"] for r in batch]), device=device)
    score = cfg.verified_reward * verdict + cfg.no_eos_penalty * (~ended).float()
    with torch.no_grad(), amp():
        old_logprobs = token_logprobs(policy, out, attention, start) * mask
        ref_logprobs = token_logprobs(reference, out, attention, start) * mask
        old_values = critic(out, attention)[:, start - 1 : -1] * mask
    kl = kl_estimate(old_logprobs, ref_logprobs) * mask
    rewards = -cfg.beta * kl
    last = (mask.sum(1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(batch), device=device), last] += score
    advantages, returns = gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
    return {"out": out, "attention": attention, "start": start, "mask": mask, "old_logprobs": old_logprobs,
            "old_values": old_values, "advantages": whiten(advantages, mask), "returns": returns, "kl": kl,
            "score": score, "verdict": verdict}


def train(policy, tokenizer, rows: list[dict], reward_fn, cfg: Settings, log=print, on_step=None,
          checkpoints: Checkpointing | None = None) -> list[dict]:
    """Run PPO on `policy` in place, on its device; returns the per-step log (reward, accuracy, kl, length, losses).

    The reference and the value model are copies of the policy on the same device; every tensor built here
    is created on `policy.device`. `on_step(entry)` sees each step's log entry as it is made (progress display,
    experiment tracker). With `checkpoints` (the TRL stages' `Checkpointing`), resumes from the newest complete
    checkpoint, saves when it is due, and on SIGTERM saves one after the current step and raises `Preempted`.
    """
    from transformers import get_scheduler

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    device = policy.device
    reference = copy.deepcopy(policy).eval()
    critic = ValueModel(policy).to(device)

    def amp():  # bf16 matmuls on a GPU, fp32 weights and optimiser state; plain fp32 on CPU
        on_gpu = device.type == "cuda"
        return torch.autocast("cuda" if on_gpu else "cpu", dtype=torch.bfloat16, enabled=on_gpu)

    parameters = list(policy.parameters()) + list(critic.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=cfg.learning_rate)
    # The schedule counts optimizer updates, ppo_epochs of them per RL step; the same one TRL's trainers use.
    schedule = get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.ppo_epochs * cfg.warmup_steps,
                             num_training_steps=cfg.ppo_epochs * cfg.max_steps)
    history = []
    parts = {"policy": policy, "critic": critic, "optimizer": optimizer, "schedule": schedule, "rng": rng}
    first = 1
    if checkpoints:
        checkpoints.install_signal_handler()
        if found := checkpoints.resume_point():
            state = persistence.load(found, parts)
            history, first = state["history"], state["step"] + 1
            log(f"ppo: resumed from {found} at step {state['step']}")
    for step in range(first, cfg.max_steps + 1):
        batch = rng.sample(rows, min(cfg.batch_size, len(rows)))
        r = rollout(policy, reference, critic, tokenizer, batch, reward_fn, cfg, amp)
        mask, start = r["mask"], r["start"]
        policy.train()
        for _ in range(cfg.ppo_epochs):
            with amp():
                logprobs = token_logprobs(policy, r["out"], r["attention"], start)
                values = critic(r["out"], r["attention"])[:, start - 1 : -1].float()
            pg, clipfrac = policy_loss(logprobs, r["old_logprobs"], r["advantages"], mask, cfg.clip)
            vf = value_loss(values, r["old_values"], r["returns"], mask, cfg.value_clip)
            loss = pg + cfg.value_coef * vf
            check_finite(loss.item(), step, checkpoints.directory if checkpoints else None)
            optimizer.zero_grad()
            loss.backward()
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(parameters, cfg.max_grad_norm)
            optimizer.step()
            schedule.step()
        entry = {"step": step, "reward": r["score"].mean().item(), "accuracy": r["verdict"].mean().item(),
                 "kl": (r["kl"].sum(1)).mean().item(), "completions/mean_length": mask.sum(1).mean().item(),
                 "policy_loss": pg.item(), "value_loss": vf.item(), "clipfrac": clipfrac.item(),
                 "learning_rate": schedule.get_last_lr()[0]}
        history.append(entry)
        if on_step is not None:
            on_step(entry)
        if step % cfg.log_every == 0 or step == 1:
            log(f"ppo step {step}: reward {entry['reward']:.3f}, accuracy {entry['accuracy']:.3f}, kl {entry['kl']:.4f}")
        if checkpoints:
            if checkpoints.due(step):
                checkpoints.saved(persistence.save(checkpoints.directory, step, parts, history), step)
            checkpoints.stop_if_preempted("rlvr", step)
    return history
