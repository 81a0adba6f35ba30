"""Where a stage's model lives: this process's GPU when there is one (bf16), else the CPU (fp32).

Every tensor a stage builds for a model is created on `model.device`; this module only picks the device.
"""
from __future__ import annotations

import os

import torch


def accelerator() -> torch.device:
    """This process's GPU (torchrun's LOCAL_RANK picks which), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def for_inference(model):
    """The model on this process's accelerator, in bf16 there (generation and scoring need no fp32 weights)."""
    device = accelerator()
    return model.to(device, dtype=torch.bfloat16) if device.type == "cuda" else model.to(device)

