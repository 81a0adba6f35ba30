"""The IF constraints of Tülu 3's RLVR mixture, in that dataset's own ground-truth format.

`allenai/RLVR-GSM-MATH-IF-Mixed-Constraints` writes an ifeval row's `ground_truth` as JSON naming one function of
open-instruct's `if_functions.py` and its arguments, every unused one null:
`{"func_name": "verify_keyword_frequency", "word": "tulip", "N": 3, "quantifier": null, ...}`.
These rules are not Google's IFEval rules (exact counts, "around" within 10%, whitespace words), so they live
here, each written from open-instruct's published definition, and `ifeval_reward` picks them by the `func_name`
key. The reward is computed on the answer after any `<|assistant|>` header and thinking section, as open-instruct.
"""
from __future__ import annotations

import json
import re
from typing import Callable


def _quantified(count: int, N: int, quantifier: str, around: int) -> bool:
    if quantifier == "at least":
        return count >= N
    if quantifier == "at most":
        return count <= N
    if quantifier == "around":
        return abs(count - N) <= around
    return False


def _paragraph_count(text: str, N: int) -> bool:
    text = "\n".join(line.strip() for line in text.splitlines()).strip()
    parts = text.split("* * *")
    return all(p.strip() for p in parts) and len(parts) == N


def _two_responses(text: str) -> bool:
    if text.count("******") != 1:
        return False
    first, second = (part.strip() for part in text.split("******"))
    return first != second


def _postscript(text: str, postscript_marker: str) -> bool:
    at = text.find(postscript_marker)
    return at >= 0 and len(text[at:].strip()) > len(postscript_marker)


def _language(text: str, language: str) -> bool:
    from langdetect import DetectorFactory, detect

    DetectorFactory.seed = 0
    return detect(text) == language


def _letter(text: str, letter: str, N: int) -> bool:
    if len(letter) != 1:
        raise ValueError(f"letter must be one character, got {letter!r}")
    return text.count(letter) == N  # case-sensitive, any character


def _json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


FUNCTIONS: dict[str, Callable[..., bool]] = {
    "verify_keywords": lambda t, keyword_list: all(k.lower() in t.lower() for k in keyword_list),
    "verify_keyword_frequency": lambda t, word, N: re.findall(r"\b\w+\b", t.lower()).count(word.lower()) == N,
    "validate_forbidden_words": lambda t, forbidden_words: not any(w.lower() in t.lower() for w in forbidden_words),
    "verify_letter_frequency": _letter,
    "validate_response_language": _language,
    "verify_paragraph_count": _paragraph_count,
    "validate_word_constraint": lambda t, N, quantifier: _quantified(len(t.strip().split()), N, quantifier,
                                                                     max(round(N * 0.1), 1)),
    "verify_sentence_constraint": lambda t, N, quantifier: _quantified(
        len(re.split(r"(?<!\w\.\w.)(?<![A-Z][a-z]\.)(?<=\.|\?|!)\s", t)), N, quantifier, 1),
    "validate_paragraphs": lambda t, N, first_word, i: len(t.split("\n\n")) == N and t.split("\n\n")[i - 1].strip(
        ).startswith(first_word),
    "verify_postscript": _postscript,
    "validate_placeholders": lambda t, N: len(re.findall(r"\[(.*?)\]", t)) >= N,
    "verify_bullet_points": lambda t, N: sum(line.strip().startswith(("*", "-")) for line in t.split("\n")) == N,
    "validate_title": lambda t: bool(re.findall(r"<<(.*?)>>", t)),
    "validate_choice": lambda t, options: any(option in t for option in options),
    "validate_highlighted_sections": lambda t, N: len(re.findall(r"\*(.*?)\*", t)) >= N,
    "validate_sections": lambda t, N, section_splitter: len(re.split(
        r"\s?" + re.escape(section_splitter) + r"\s?\d+\s?", t, flags=re.IGNORECASE)) - 1 >= N,
    "validate_json_format": _json,
    "validate_repeat_prompt": lambda t, original_prompt: t.startswith(original_prompt),
    "validate_two_responses": _two_responses,
    "validate_uppercase": lambda t: t == t.upper(),
    "validate_lowercase": lambda t: t == t.lower(),
    "validate_frequency_capital_words": lambda t, N, quantifier: _quantified(
        len(re.findall(r"\b[A-Z]+\b", t)), N, quantifier, max(round(N * 0.1), 1)),
    "validate_end": lambda t, end_phrase: t.endswith(end_phrase),
    "validate_quotation": lambda t: t.startswith('"') and t.endswith('"'),
    "validate_no_commas": lambda t: "," not in t,
}


def answer_text(completion: str) -> str:
    """The answer open-instruct scores: after the last `<|assistant|>` header and any `</think>`, stripped."""
    text = completion.split("<|assistant|>")[-1].split("</think>")[-1]
    return text.replace("<answer>", "").replace("</answer>", "").strip()


def follows(completion: str, constraint: dict) -> bool:
    """Whether `completion` meets one RLVR-mixture constraint (`func_name` plus its arguments, nulls ignored)."""
    name = constraint.get("func_name")
    if name not in FUNCTIONS:
        raise KeyError(f"ifeval ground_truth: unknown func_name {name!r}; known: {sorted(FUNCTIONS)}")
    kwargs = {k: v for k, v in constraint.items() if k != "func_name" and v is not None}
    try:
        return bool(FUNCTIONS[name](answer_text(completion), **kwargs))
    except TypeError as exc:
        raise ValueError(f"ifeval ground_truth {name}: bad arguments {sorted(kwargs)}: {exc}") from None
