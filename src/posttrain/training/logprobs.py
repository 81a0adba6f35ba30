"""Sequence log-probabilities of assistant completions, for DPO margins and PPO."""
from __future__ import annotations

import torch


@torch.inference_mode()
def completion_logprobs(model, tokenizer, conversations: list[list[dict]], batch_size: int = 64) -> list[float]:
    """Sum of log p(token) over the last (assistant) turn of each conversation."""
    sequences, starts = [], []
    for conversation in conversations:
        prompt = tokenizer.apply_chat_template(conversation[:-1], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(conversation, tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        sequences.append(tokenizer(full, add_special_tokens=False)["input_ids"])
        starts.append(len(prompt_ids))
    totals = []
    for begin in range(0, len(sequences), batch_size):
        batch = sequences[begin : begin + batch_size]
        width = max(map(len, batch))
        # Built on the model's device: a CUDA model given CPU inputs fails (the DPO margin runs on the GPU).
        ids = torch.full((len(batch), width), tokenizer.pad_token_id, device=model.device)
        mask = torch.zeros((len(batch), width), dtype=torch.long, device=model.device)
        for i, seq in enumerate(batch):
            ids[i, : len(seq)] = torch.tensor(seq, device=model.device)
            mask[i, : len(seq)] = 1
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        token_logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        for i, seq in enumerate(batch):
            start = starts[begin + i]
            totals.append(token_logp[i, start - 1 : len(seq) - 1].sum().item())
    return totals


def preference_margin(model, tokenizer, pairs: list[dict]) -> float:
    """Mean of log p(chosen) - log p(rejected) over pairs (0.0 when there are none)."""
    if not pairs:
        return 0.0
    chosen = completion_logprobs(model, tokenizer, [p["chosen"] for p in pairs])
    rejected = completion_logprobs(model, tokenizer, [p["rejected"] for p in pairs])
    return sum(c - r for c, r in zip(chosen, rejected)) / len(pairs)
