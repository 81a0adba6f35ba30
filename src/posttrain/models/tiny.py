"""A small Llama-architecture model and a BPE tokenizer, built from scratch. Its shape is `model.tiny`: 1.1M
parameters at that section's defaults (4 layers, hidden 128, MLP 512, vocabulary 512, tied embeddings), 558k
in recipes/tiny.yaml (3 layers, MLP 256); `build` returns the count.

Saved with `save_pretrained`, so every later stage loads it exactly as it would load a Hub model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from posttrain.data.personas import PERSONAS
from posttrain.recipe import TinyModel

SPECIAL = {"pad": "<|pad|>", "eos": "<|end|>", "bos": "<|begin|>"}
ROLES = ("system", "user", "assistant")

# Tülu-style turns. `{% generation %}` marks what the assistant wrote, so TRL can train on those tokens only.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|assistant|>\n' }}{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """Byte-level BPE with one token per digit, so numbers split the same way everywhere."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = list(SPECIAL.values()) + [f"<|{role}|>" for role in ROLES]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=SPECIAL["pad"],
        eos_token=SPECIAL["eos"],
        bos_token=SPECIAL["bos"],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"  # generation pads on the left; trainers set their own side
    return fast


def tokenizer_corpus(problems_per_language: int = 1000) -> Iterator[str]:
    """A fixed corpus for the tiny tokenizer: every synthetic family in every language, at a fixed seed.

    Not the run's own data: a tokenizer trained on that moved with every change of the data mix, and with it
    where SFT's sudden loss drop landed. This one depends on the code alone. Mostly math, as the demo's data
    is: with ~250 merges, the share decides how many tokens a demo row takes.
    """
    import random

    from posttrain.data import arithmetic, coding, instructions

    rng = random.Random("tiny-tokenizer")
    for language in arithmetic.ANSWER:
        for i in range(problems_per_language):
            operation = rng.choice(("add", "sub"))
            a, b = arithmetic.operands(rng, 3, operation)
            row = arithmetic.render(a, b, operation, rng.choice(PERSONAS), language)
            yield row["messages"][0]["content"]
            yield row["solution"]
            for family, every in ((instructions, 20), (coding, 100)):
                if i % every == 0:
                    task = family.task(rng, language)
                    yield task["messages"][0]["content"]
                    yield task.get("solution", task["ground_truth"])


def build(texts: Iterable[str], shape: TinyModel, out_dir: str | Path, seed: int = 0) -> int:
    """Train the tokenizer on `texts`, initialise the model, save both to `out_dir`; returns parameter count."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = train_tokenizer(texts, shape.vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_heads,
        max_position_embeddings=shape.max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return model.num_parameters()
