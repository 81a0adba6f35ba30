"""Training: what SFT, DPO and RLVR share (trainer set-up, checkpoints, launch, PPO, log-probs)."""
