"""MATH-style verifier through math-verify: boxed answers, LaTeX, and equivalent forms (1/2 = 0.5)."""
from __future__ import annotations


def math_reward(completions: list[str], ground_truth: list[str], **_: object) -> list[float]:
    from math_verify import parse, verify

    scores = []
    for completion, truth in zip(completions, ground_truth, strict=True):
        gold = parse(truth if "$" in truth or "\\boxed" in truth else f"${truth}$")
        answer = parse(completion)
        scores.append(1.0 if gold and answer and verify(gold, answer) else 0.0)
    return scores
