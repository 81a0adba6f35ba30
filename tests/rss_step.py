"""Run one real training micro-step and print the peak RSS growth it caused, in bytes (a subprocess of
tests/test_plan_measured.py: real tensors, measured by the kernel, not by PyTorch).

argv: config JSON, batch, length, dtype. Peak RSS (VmHWM) is reset just before the step (`clear_refs` 5).
"""
import json
import sys

import torch


def rss(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def main() -> None:
    from posttrain.plan.architecture import build

    config, batch, length, dtype = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(1)
    torch.set_default_dtype(getattr(torch, dtype))
    torch.manual_seed(0)
    model = build(config).train()
    ids = torch.randint(0, config["vocab_size"], (batch, length))
    mask = torch.ones_like(ids)
    model(input_ids=ids[:, :8], attention_mask=mask[:, :8], labels=ids[:, :8]).loss.backward()  # warm the allocator
    model.zero_grad(set_to_none=True)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = rss("VmRSS")
    model(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    print(json.dumps({"peak_growth": rss("VmHWM") - before, "gradients": grads}))


if __name__ == "__main__":
    main()
