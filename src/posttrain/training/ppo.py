"""PPO for RLVR, as in Tülu 3, compactly: TRL 1.16 has no PPO trainer.

One step: sample a completion per prompt from the policy; score it with the verifier (`verified_reward`
when right, `no_eos_penalty` when it never ends); per-token rewards are minus `beta` times the KL estimate
to the frozen reference, with the verifier's reward added on the last token; a value model (the policy's
backbone with a scalar head) gives GAE advantages; then `ppo_epochs` passes of the clipped policy loss and
the clipped value loss. The pieces are plain functions so they can be tested one by one.
"""
from __future__ import annotations

import copy
import json
import random
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """Generalised advantage estimation over response tokens; returns (advantages, returns)."""
    advantages = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] * mask[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        advantages[:, t] = last
    return advantages, advantages + values


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


def policy_loss(logprobs, old_logprobs, advantages, mask, clip: float):
    """Clipped surrogate objective (to minimise) and the fraction of tokens where clipping was active."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip, 1 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    return loss, masked_mean((clipped > unclipped).float(), mask)


def value_loss(values, old_values, returns, mask, clip: float):
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


def kl_estimate(logprobs, ref_logprobs):
    """Per-token KL(policy || reference) estimate on sampled tokens (k1: log-ratio)."""
    return logprobs - ref_logprobs


class ValueModel(torch.nn.Module):
    """The policy's transformer with a scalar head: V(prefix) at every position."""

    def __init__(self, causal_lm):
        super().__init__()
        self.backbone = copy.deepcopy(causal_lm.model)
        self.head = torch.nn.Linear(causal_lm.config.hidden_size, 1)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, input_ids, attention_mask):
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(hidden).squeeze(-1)


def token_logprobs(model, input_ids, attention_mask, start: int) -> torch.Tensor:
    """log p of tokens `start:` given their prefixes."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, start - 1 : -1].float()
    return torch.log_softmax(logits, -1).gather(-1, input_ids[:, start:, None]).squeeze(-1)


@dataclass
class Settings:
    learning_rate: float
    beta: float
    batch_size: int
    max_steps: int
    temperature: float
    max_completion_length: int
    verified_reward: float
    no_eos_penalty: float
    warmup_steps: int = 0  # the learning rate rises linearly to its peak over these optimizer steps
    ppo_epochs: int = 2
    clip: float = 0.2
    value_clip: float = 0.2
    gamma: float = 1.0
    lam: float = 0.95
    value_coef: float = 0.5
    seed: int = 0


def train(policy, tokenizer, rows: list[dict], reward_fn, cfg: Settings, log=print, on_step=None,
          checkpoints: Checkpoints | None = None) -> list[dict]:
    """Run PPO on `policy` in place, on its device; returns the per-step log (reward, accuracy, kl, length, losses).

    The reference and the value model are copies of the policy on the same device; every tensor built here
    is created on `policy.device`. `on_step(entry)` sees each step's log entry as it is made (progress display,
    experiment tracker). With `checkpoints`, resumes from the newest complete checkpoint there, saves one every
    `every` steps, and on SIGTERM saves one after the current step and raises `training.Preempted`.
    """
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    device = policy.device
    reference = copy.deepcopy(policy).eval()
    critic = ValueModel(policy).to(device)

    def amp():  # bf16 matmuls on a GPU, fp32 weights and optimiser state; plain fp32 on CPU
        on_gpu = device.type == "cuda"
        return torch.autocast("cuda" if on_gpu else "cpu", dtype=torch.bfloat16, enabled=on_gpu)

    optimizer = torch.optim.AdamW(list(policy.parameters()) + list(critic.parameters()), lr=cfg.learning_rate)
    warmup = cfg.ppo_epochs * cfg.warmup_steps  # in optimizer updates: ppo_epochs of them per step
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda update: min(1.0, (update + 1) / max(warmup, 1)))
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    history = []
    parts = {"policy": policy, "critic": critic, "optimizer": optimizer, "schedule": schedule, "rng": rng}
    first = 1
    if checkpoints:
        checkpoints.install_signal_handler()
        if resumed := checkpoints.resume(parts):
            history = resumed["history"]
            first = resumed["step"] + 1
            log(f"ppo: resumed from {checkpoints.resumed_from} at step {resumed['step']}")
    for step in range(first, cfg.max_steps + 1):
        batch = rng.sample(rows, min(cfg.batch_size, len(rows)))
        prompts = [tokenizer.apply_chat_template(r["messages"], tokenize=False, add_generation_prompt=True)
                   for r in batch]
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
        advantages = whiten(advantages, mask)
        policy.train()
        for _ in range(cfg.ppo_epochs):
            with amp():
                logprobs = token_logprobs(policy, out, attention, start)
                values = critic(out, attention)[:, start - 1 : -1].float()
            pg, clipfrac = policy_loss(logprobs, old_logprobs, advantages, mask, cfg.clip)
            vf = value_loss(values, old_values, returns, mask, cfg.value_clip)
            loss = pg + cfg.value_coef * vf
            if not torch.isfinite(loss):
                raise FloatingPointError(f"ppo: loss is {loss.item()} at step {step}")
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(policy.parameters()) + list(critic.parameters()), 1.0)
            optimizer.step()
            schedule.step()
        entry = {"step": step, "reward": score.mean().item(), "accuracy": verdict.mean().item(),
                 "kl": (kl.sum(1)).mean().item(), "completions/mean_length": mask.sum(1).mean().item(),
                 "policy_loss": pg.item(), "value_loss": vf.item(), "clipfrac": clipfrac.item()}
        entry["learning_rate"] = schedule.get_last_lr()[0]
        history.append(entry)
        if on_step is not None:
            on_step(entry)
        if step % 10 == 0 or step == 1:
            log(f"ppo step {step}: reward {entry['reward']:.3f}, accuracy {entry['accuracy']:.3f}, kl {entry['kl']:.4f}")
        if checkpoints:
            checkpoints.after_step(step, parts, history)
    return history


class Checkpoints:
    """PPO's own checkpoints, in the trainer's layout (`checkpoint-N` sealed by a `COMPLETED` marker), so
    `training.latest_complete` picks the newest whole one: policy and value model (safetensors), optimizer
    and schedule (loaded with `weights_only`), the sampling RNGs and the log so far."""

    def __init__(self, directory, every: int, keep: int, mirror: str | None = None):
        self.directory, self.every, self.keep, self.mirror = Path(directory), every, keep, mirror
        self.terminated = False
        self.resumed_from = None

    def install_signal_handler(self) -> None:
        def on_term(signum, frame):  # finish this step, save, stop
            self.terminated = True

        signal.signal(signal.SIGTERM, on_term)

    def resume(self, parts: dict) -> dict | None:
        from safetensors.torch import load_file, load_model

        from posttrain.training.trainer import latest_complete

        if self.mirror:  # a new pod without the volume: fetch what an earlier one copied out
            from posttrain.training.checkpoints import pull

            pull(self.mirror, self.directory)
        found = latest_complete(self.directory)
        if found is None:
            return None
        self.resumed_from = found
        load_model(parts["policy"], str(found / "policy.safetensors"))
        load_model(parts["critic"], str(found / "critic.safetensors"))
        state = torch.load(found / "optimizer.pt", weights_only=True)
        parts["optimizer"].load_state_dict(state["optimizer"])
        parts["schedule"].load_state_dict(state["schedule"])
        meta = json.loads((found / "state.json").read_text())
        version, internal, gauss = meta["python_rng"]
        parts["rng"].setstate((version, tuple(internal), gauss))
        rng = load_file(str(found / "rng.safetensors"))
        torch.set_rng_state(rng["cpu"])
        if torch.cuda.is_available():
            torch.cuda.set_rng_state_all([rng[f"cuda{i}"] for i in range(torch.cuda.device_count())])
        return meta

    def after_step(self, step: int, parts: dict, history: list[dict]) -> None:
        if (self.every and step % self.every == 0) or self.terminated:
            self.save(step, parts, history)
        if self.terminated:
            from posttrain.training.trainer import Preempted

            raise Preempted(f"rlvr: stopped by SIGTERM at step {step}; checkpoint saved in {self.directory}, "
                            "rerun to resume")

    def save(self, step: int, parts: dict, history: list[dict]) -> None:
        from safetensors.torch import save_file, save_model

        from posttrain.training.trainer import checkpoints as found, mark_complete

        path = self.directory / f"checkpoint-{step}"
        path.mkdir(parents=True, exist_ok=True)
        save_model(parts["policy"], str(path / "policy.safetensors"))  # handles tied embeddings
        save_model(parts["critic"], str(path / "critic.safetensors"))
        torch.save({"optimizer": parts["optimizer"].state_dict(), "schedule": parts["schedule"].state_dict()},
                   path / "optimizer.pt")
        version, internal, gauss = parts["rng"].getstate()
        (path / "state.json").write_text(json.dumps({"step": step, "history": history,
                                                     "python_rng": [version, list(internal), gauss]}))
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng |= {f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
        save_file(rng, str(path / "rng.safetensors"))
        mark_complete(path, step)
        if self.mirror:
            from posttrain.training.checkpoints import push

            push(path, self.mirror, self.keep)
        for old in found(self.directory)[self.keep:]:
            shutil.rmtree(old, ignore_errors=True)
