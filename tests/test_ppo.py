"""The pieces of our PPO, and a few steps of it on a tiny model."""
import math
from pathlib import Path

import pytest
import torch

from posttrain.training import ppo
from posttrain.data.arithmetic import problems
from posttrain.models.tiny import build
from posttrain.recipe import TinyModel


def test_gae_matches_a_hand_computation():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    mask = torch.ones(1, 3)
    advantages, returns = ppo.gae(rewards, values, mask, gamma=1.0, lam=0.5)
    d2 = 1.0 - 0.7
    d1 = 0.0 + 0.7 - 0.6
    d0 = 0.0 + 0.6 - 0.5
    expected = [d0 + 0.5 * (d1 + 0.5 * d2), d1 + 0.5 * d2, d2]
    assert advantages[0].tolist() == pytest.approx(expected)
    assert returns[0].tolist() == pytest.approx([a + v for a, v in zip(expected, [0.5, 0.6, 0.7])])


def test_gae_ignores_tokens_after_the_end():
    advantages, _ = ppo.gae(torch.tensor([[1.0, 5.0]]), torch.tensor([[0.0, 3.0]]), torch.tensor([[1.0, 0.0]]), 1.0, 1.0)
    assert advantages.tolist() == [[1.0, 0.0]]


def test_policy_loss_clips_the_ratio():
    old = torch.zeros(1, 2)
    adv = torch.tensor([[1.0, -1.0]])
    mask = torch.ones(1, 2)
    new = torch.log(torch.tensor([[1.5, 0.5]])).requires_grad_()  # ratios 1.5 and 0.5, both beyond 0.2
    loss, clipfrac = ppo.policy_loss(new, old, adv, mask, clip=0.2)
    assert loss.item() == pytest.approx((-1.2 + 0.8) / 2)
    assert clipfrac.item() == 1.0
    loss.backward()
    assert new.grad.abs().sum().item() == 0.0  # clipped: no push further away


def test_value_loss_clips_large_moves():
    loss = ppo.value_loss(torch.tensor([[2.0]]), torch.tensor([[0.0]]), torch.tensor([[2.0]]), torch.ones(1, 1), 0.5)
    assert loss.item() == pytest.approx(0.5 * (2.0 - 0.5) ** 2)


def test_kl_estimate_averages_to_the_kl_over_the_policys_samples():
    """Tokens drawn from the policy p = (0.2, 0.8), reference q = (0.5, 0.5): the per-token estimate's mean is
    KL(p || q) = 0.2 ln 0.4 + 0.8 ln 1.6 = 0.1927 (not KL(q || p) = 0.2231, not its negative)."""
    p, q = torch.tensor([0.2, 0.8]), torch.tensor([0.5, 0.5])
    tokens = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    estimate = ppo.kl_estimate(p.log()[tokens], q.log()[tokens]).mean().item()
    assert estimate == pytest.approx(0.2 * math.log(0.4) + 0.8 * math.log(1.6), abs=0.005)


def test_a_few_ppo_steps_raise_the_reward_and_keep_kl_finite(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = list(problems(0, 64, 1, ["add"], ["en"]))
    build((r["messages"][0]["content"] + " " + r["solution"] for r in rows),
          TinyModel(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, vocab_size=320), tmp_path)
    policy = AutoModelForCausalLM.from_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)

    def sevens(completions, **_):  # a reward the untrained model sometimes earns: say "7"
        return [1.0 if "7" in text else 0.0 for text in completions]

    settings = ppo.Settings(learning_rate=1e-2, beta=0.05, batch_size=32, max_steps=20, temperature=1.0,
                            max_completion_length=6, verified_reward=1.0, no_eos_penalty=0.0, ppo_epochs=2)
    history = ppo.train(policy, tokenizer, rows, sevens, settings, log=lambda *_: None)
    first = sum(h["reward"] for h in history[:4]) / 4
    last = sum(h["reward"] for h in history[-4:]) / 4
    assert last > first + 0.2, [round(h["reward"], 2) for h in history]
    assert all(math.isfinite(h["kl"]) for h in history)
    assert history[-1]["kl"] > 0  # the policy moved away from its reference, and we measured it


@pytest.mark.parametrize("scheduler, expected", [
    ("constant_with_warmup", [0.0, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3]),
    ("linear", [0.0, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 5e-4]),  # to 0 at update 6
])
def test_ppo_follows_the_recipes_lr_scheduler_warmup_and_clip(scheduler, expected, tmp_path):
    """Warmup counts RL steps; each makes ppo_epochs (2) optimizer updates: 2 warmup steps, 3 steps = 4 of 6
    updates. The rate per update is transformers' schedule (as in TRL's trainers); `rlvr.clip` is the ratio clip."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from posttrain.recipe import load
    from posttrain.training.ppo import loop

    rows = list(problems(0, 8, 1, ["add"], ["en"]))
    build((r["messages"][0]["content"] for r in rows),
          TinyModel(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, vocab_size=300), tmp_path)
    policy = AutoModelForCausalLM.from_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    recipe = load(Path(__file__).parents[1] / "recipes" / "tiny.yaml").override(rlvr={
        "algorithm": "ppo", "learning_rate": 1e-3, "lr_scheduler": scheduler, "warmup": 2, "max_steps": 3,
        "batch_size": 4, "max_completion_length": 3, "clip": 0.13})
    seen, clips = [], []
    original_step, original_loss = torch.optim.AdamW.step, loop.policy_loss

    def record(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original_step(self, *args, **kwargs)

    def clipped_at(*args):
        clips.append(args[-1])
        return original_loss(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.optim.AdamW, "step", record)
        patch.setattr(loop, "policy_loss", clipped_at)
        ppo.train(policy, tokenizer, rows, lambda texts, **_: [0.0] * len(texts), ppo.Settings.from_recipe(recipe),
                  log=lambda *_: None)
    assert seen == pytest.approx(expected)
    assert clips == [0.13] * 6


def test_grpo_gets_the_recipes_clip_and_warmup(tmp_path):
    from posttrain.recipe import load
    from posttrain.stages import rlvr

    recipe = load(Path(__file__).parents[1] / "recipes" / "tiny.yaml").override(rlvr={
        "lr_scheduler": "constant_with_warmup", "warmup": 0.25, "max_steps": 40, "clip": 0.13})
    config = rlvr.trainer_config(recipe, tmp_path)
    assert (config.lr_scheduler_type, config.get_warmup_steps(40)) == ("constant_with_warmup", 10)
    assert config.epsilon == 0.13 and config.epsilon_high is None  # TRL: the upper bound defaults to epsilon
