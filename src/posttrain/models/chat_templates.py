"""Chat templates a recipe can name (`model.chat_template`), and the check that a tokenizer has a usable one.

SFT trains on the assistant's tokens only (TRL's `assistant_only_loss`), which needs `{% generation %}` markers
around what the assistant wrote. A base model such as Llama-3.1-8B ships no template at all, so a recipe names
one and the base stage sets it before anything trains.
"""
from __future__ import annotations

# Tülu 3's own template (open-instruct's "tulu" chat template): the same text, with generation markers around
# the assistant's content and end-of-sequence token so the loss mask covers exactly those tokens.
TULU = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\n' }}"
    "{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}"
    "{% if not loop.last %}{{ '\n' }}{% endif %}"
    "{% endif %}"
    "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
    "{% endfor %}"
)

TEMPLATES = {"tulu": TULU}
GENERATION_MARKER = "{% generation %}"


def resolve(name_or_text: str) -> str:
    """A named template's text; anything containing Jinja is taken as the template itself."""
    if name_or_text in TEMPLATES:
        return TEMPLATES[name_or_text]
    if "{%" in name_or_text or "{{" in name_or_text:
        return name_or_text
    raise ValueError(f"recipe.model.chat_template: unknown template {name_or_text!r}; known: {sorted(TEMPLATES)} "
                     "or a Jinja template")


def apply(tokenizer, chat_template: str | None, base: str) -> None:
    """Set the recipe's template (if any) on `tokenizer`, then refuse one SFT cannot train with."""
    if chat_template:
        tokenizer.chat_template = resolve(chat_template)
    template = tokenizer.chat_template
    if not template:
        raise ValueError(f"recipe.model.chat_template: the tokenizer of {base!r} has no chat template; name one "
                         f"(e.g. chat_template: tulu)")
    if not isinstance(template, str) or GENERATION_MARKER not in template:
        raise ValueError(f"recipe.model.chat_template: the chat template of {base!r} has no {GENERATION_MARKER} "
                         "markers, which SFT's assistant-only loss needs; name one that has them (e.g. tulu)")
    if tokenizer.pad_token is None:  # Llama 3.1 base has none; batches need one, and it is never trained on
        tokenizer.pad_token = tokenizer.eos_token
