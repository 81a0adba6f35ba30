"""Verifiers: `(completions, **row_fields) -> list[float]`, 1.0 when the answer is right, else 0.0."""
from posttrain.verifiers.code import code_reward
from posttrain.verifiers.ifeval import ifeval_reward
from posttrain.verifiers.math import math_reward
from posttrain.verifiers.number import choice_reward, final_number, number_reward

VERIFIERS = {"arithmetic": number_reward, "gsm8k": number_reward, "math": math_reward, "code": code_reward,
             "ifeval": ifeval_reward, "multiple_choice": choice_reward,
             "MATH": math_reward}  # the name Tülu 3's RLVR mixture gives its MATH rows


def verify(completions: list[str], dataset: list[str], ground_truth: list[str], **_: object) -> list[float]:
    """Score each completion with the verifier its row's `dataset` field names."""
    unknown = sorted(set(dataset) - set(VERIFIERS))
    if unknown:
        raise KeyError(f"no verifier for dataset {unknown[0]!r}; known: {sorted(VERIFIERS)}")
    scores: list[float] = [0.0] * len(completions)
    for name in sorted(set(dataset)):  # one call per verifier, so batched ones (code) run in parallel
        index = [i for i, d in enumerate(dataset) if d == name]
        found = VERIFIERS[name]([completions[i] for i in index], ground_truth=[ground_truth[i] for i in index])
        for i, score in zip(index, found):
            scores[i] = score
    return scores


__all__ = ["VERIFIERS", "choice_reward", "code_reward", "final_number", "ifeval_reward", "math_reward", "number_reward", "verify"]
