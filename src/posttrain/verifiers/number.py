"""GSM8K-style verifier: the last number in the completion must equal the ground truth."""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def final_number(text: str) -> Decimal | None:
    """The last number written in `text` (thousands separators allowed), or None."""
    for match in reversed(_NUMBER.findall(text)):
        try:
            return Decimal(match.replace(",", ""))
        except InvalidOperation:
            continue
    return None


def number_reward(completions: list[str], ground_truth: list[str], **_: object) -> list[float]:
    scores = []
    for completion, truth in zip(completions, ground_truth, strict=True):
        got, want = final_number(completion), final_number(str(truth))
        scores.append(1.0 if got is not None and want is not None and got == want else 0.0)
    return scores


_STATED = re.compile(r"answer is:?\s*\(?([A-J])\b", re.I)
_LETTER = re.compile(r"\b([A-H])\b")  # not I or J alone: too often a pronoun or a typo


def choice_reward(completions: list[str], ground_truth: list[str], **_: object) -> list[float]:
    """Multiple choice: the letter after the last "answer is", else the last standalone option letter."""
    scores = []
    for completion, truth in zip(completions, ground_truth, strict=True):
        letters = [m.upper() for m in _STATED.findall(completion)] or _LETTER.findall(completion)
        scores.append(1.0 if letters and letters[-1] == truth.strip().upper() else 0.0)
    return scores
