"""PPO's maths, as plain functions so they can be tested one by one: GAE, whitening, the clipped policy and
value losses, the KL estimate, token log-probabilities, and the value model."""
from __future__ import annotations

import copy

import torch


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
