"""Activation memory of one micro-step, measured by tracing it on fake tensors (no weights, no GPU).

The model is built from its config under `torch._subclasses.fake_tensor.FakeTensorMode` (tensors with shapes
and dtypes, no storage) and one micro-step runs under `torch.distributed._tools.mem_tracker.MemTracker`,
which records every allocation by kind (parameter, gradient, activation, temporary). What this module
returns is the step's peak minus its parameters, buffers, gradients and optimizer state: activations,
temporaries and logits, which the ZeRO arithmetic in `memory` does not cover.

Decoder layers are identical, so the step is traced with 1 and with 2 of them and the difference scaled to
the model's depth: peak(L) = peak(1) + (L - 1) x (peak(2) - peak(1)). A full Llama-3.1-8B step took 47 s
here; two shallow ones take a few seconds (tests/test_plan_measured.py checks the scaling against a full trace).
"""
from __future__ import annotations

import json
from functools import lru_cache

TRAIN, TRAIN_CHECKPOINTED, LOGPROBS = "train", "train_checkpointed", "logprobs"  # forward + backward with the LM
# loss (without / with gradient checkpointing), posttrain.training.logprobs.token_logprobs (inference)


def micro_step(config: dict, kind: str, batch: int, length: int, dtype: str = "bfloat16",
               with_gradients: bool = False) -> int:
    """Peak bytes, beyond the model's states, of one micro-step of `batch` sequences of `length` tokens;
    `with_gradients`: the gradients allocated at that peak counted too (to compare with a whole process)."""
    return _scaled(json.dumps(config, sort_keys=True), kind, batch, length, dtype, with_gradients)


@lru_cache(maxsize=64)
def _scaled(config_json: str, kind: str, batch: int, length: int, dtype: str, with_gradients: bool) -> int:
    config = json.loads(config_json)
    one = _traced(config, 1, kind, batch, length, dtype, with_gradients)
    if config["num_hidden_layers"] == 1:
        return one
    two = _traced(config, 2, kind, batch, length, dtype, with_gradients)
    return one + (config["num_hidden_layers"] - 1) * max(0, two - one)


def _traced(config: dict, layers: int, kind: str, batch: int, length: int, dtype: str = "bfloat16",
            with_gradients: bool = False) -> int:
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType

    from posttrain.plan.architecture import build
    from posttrain.training.logprobs import token_logprobs

    default = torch.get_default_dtype()
    # bf16 as the GPU stages run; `.to(bfloat16)` on a fake model fails ("Couldn't swap Embedding.weight")
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        with FakeTensorMode():
            model = build(config, layers)
            ids = torch.randint(0, config["vocab_size"], (batch, length))
            mask = torch.ones_like(ids)
            tracker = MemTracker()
            tracker.track_external(model)
            with tracker:
                if kind in (TRAIN, TRAIN_CHECKPOINTED):
                    if kind == TRAIN_CHECKPOINTED:  # as the trainers do with gradient_checkpointing: true
                        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
                    model.train()
                    model(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()
                else:
                    with torch.inference_mode():
                        token_logprobs(model.eval(), ids, mask)
            peak = next(iter(tracker.get_tracker_snapshot("peak").values()))
    finally:
        torch.set_default_dtype(default)
    states = (_MemRefType.PARAM, _MemRefType.BUFFER, _MemRefType.OPT, *(() if with_gradients else (_MemRefType.GRAD,)))
    return peak["Total"] - sum(peak.get(kind, 0) for kind in states)
