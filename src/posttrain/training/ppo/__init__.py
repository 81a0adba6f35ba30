"""PPO for RLVR, as in Tülu 3, compactly: TRL 1.16 has no PPO trainer.

`maths` holds the algorithm's pieces, `loop` the rollout and update loop, `persistence` the checkpoint files;
when to checkpoint, resuming, SIGTERM and the finite-loss check are the same as the TRL stages'
(`training.trainer.Checkpointing`, `check_finite`).
"""
from posttrain.training.ppo.loop import Settings, train
from posttrain.training.ppo.maths import (ValueModel, gae, kl_estimate, masked_mean, policy_loss, token_logprobs,
                                          value_loss, whiten)

__all__ = ["Settings", "ValueModel", "gae", "kl_estimate", "masked_mean", "policy_loss", "token_logprobs", "train",
           "value_loss", "whiten"]
