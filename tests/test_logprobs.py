"""The held-out margin pass computes log-probs a vocabulary chunk at a time: the same numbers as the full
log-softmax over the whole batch, which at 128k vocabulary does not fit on a GPU."""
import pytest
import torch

from posttrain.data.arithmetic import problems
from posttrain.models.tiny import build
from posttrain.recipe import TinyModel
from posttrain.training import logprobs


def _full_softmax(model, tokenizer, conversations):  # the implementation before the chunking, as a reference
    sums = []
    for conversation in conversations:
        prompt = tokenizer.apply_chat_template(conversation[:-1], tokenize=False, add_generation_prompt=True)
        full = tokenizer(tokenizer.apply_chat_template(conversation, tokenize=False), add_special_tokens=False)
        start = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        ids = torch.tensor([full["input_ids"]])
        with torch.inference_mode():
            logp = torch.log_softmax(model(input_ids=ids).logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None])
        sums.append(logp[0, start - 1 :, 0].sum().item())
    return sums


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tmp_path_factory.mktemp("tiny")
    rows = list(problems(0, 12, 1, ["add", "sub"], ["en", "de"]))
    build((r["messages"][0]["content"] + " " + r["solution"] for r in rows),
          TinyModel(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, vocab_size=320), path)
    conversations = [r["messages"] + [{"role": "assistant", "content": r["solution"]}] for r in rows]
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path), conversations


@pytest.mark.parametrize("chunk", [3, 1024])
def test_chunked_logprobs_equal_the_full_softmax(tiny, chunk, monkeypatch):
    model, tokenizer, conversations = tiny
    monkeypatch.setattr(logprobs, "CHUNK", chunk)  # 3: many chunks, crossing sequence boundaries
    expected = _full_softmax(model, tokenizer, conversations)
    got = logprobs.completion_logprobs(model, tokenizer, conversations, batch_size=5)
    assert got == pytest.approx(expected, abs=1e-5)


def test_truncation_keeps_the_first_tokens(tiny):
    model, tokenizer, conversations = tiny
    whole = logprobs.completion_logprobs(model, tokenizer, conversations[:3])
    cut = logprobs.completion_logprobs(model, tokenizer, conversations[:3], max_length=12)
    longer = [w != c for w, c in zip(whole, cut)]
    assert any(longer) and all(c >= w - 1e-6 for w, c in zip(whole, cut))  # fewer tokens: a larger log-prob
