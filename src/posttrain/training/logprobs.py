"""Sequence log-probabilities of assistant completions, for DPO margins and PPO.

The vocabulary is the wide axis: at Llama-3.1's 128,256 tokens, fp32 logits of 64 sequences x 2,048 tokens are
67 GB. So the language-model head runs on at most `CHUNK` positions at a time, each chunk reduced to the
log-probability of its next token (logit - logsumexp) before the next is computed. posttrain.plan traces
`token_logprobs` to size this pass.
"""
from __future__ import annotations

import torch

CHUNK = 1024  # positions per head call: 1,024 x 128,256 x 4 bytes = 0.5 GB of fp32 logits at a time


def token_logprobs(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log p(ids[:, t + 1] | ids[:, :t + 1]) for every position t, shape (batch, width - 1), fp32."""
    hidden = model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
    head = model.get_output_embeddings()
    targets = ids[:, 1:]
    flat, flat_targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    out = torch.empty(flat_targets.shape, dtype=torch.float32, device=ids.device)
    for begin in range(0, flat.shape[0], CHUNK):
        # the head's weights, not the module: a module called once per chunk confuses PyTorch's MemTracker
        logits = torch.nn.functional.linear(flat[begin : begin + CHUNK], head.weight, head.bias).float()
        picked = logits.gather(-1, flat_targets[begin : begin + CHUNK, None]).squeeze(-1)
        out[begin : begin + CHUNK] = picked - torch.logsumexp(logits, -1)
    return out.view(targets.shape)


@torch.inference_mode()
def completion_logprobs(model, tokenizer, conversations: list[list[dict]], batch_size: int = 8,
                        max_length: int | None = None) -> list[float]:
    """Sum of log p(token) over the last (assistant) turn of each conversation, truncated at `max_length`
    tokens (prompt + completion) as the trainer truncates them."""
    sequences, starts = [], []
    for conversation in conversations:
        prompt = tokenizer.apply_chat_template(conversation[:-1], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(conversation, tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        sequences.append(tokenizer(full, add_special_tokens=False)["input_ids"][:max_length])
        starts.append(min(len(prompt_ids), len(sequences[-1])))
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
        token_logp = token_logprobs(model, ids, mask)
        for i, seq in enumerate(batch):
            start = starts[begin + i]
            totals.append(token_logp[i, max(start - 1, 0) : len(seq) - 1].sum().item())
    return totals


def preference_margin(model, tokenizer, pairs: list[dict], batch_size: int = 8, max_length: int | None = None) -> float:
    """Mean of log p(chosen) - log p(rejected) over pairs (0.0 when there are none)."""
    if not pairs:
        return 0.0
    chosen = completion_logprobs(model, tokenizer, [p["chosen"] for p in pairs], batch_size, max_length)
    rejected = completion_logprobs(model, tokenizer, [p["rejected"] for p in pairs], batch_size, max_length)
    return sum(c - r for c, r in zip(chosen, rejected)) / len(pairs)
