"""Verifiers: `(completions, **row_fields) -> list[float]`, 1.0 when the answer is right, else 0.0."""
from posttrain.verifiers.number import final_number, number_reward

VERIFIERS = {"arithmetic": number_reward, "gsm8k": number_reward}


def verify(completions: list[str], dataset: list[str], ground_truth: list[str], **_: object) -> list[float]:
    """Score each completion with the verifier its row's `dataset` field names."""
    scores = []
    for completion, name, truth in zip(completions, dataset, ground_truth, strict=True):
        if name not in VERIFIERS:
            raise KeyError(f"no verifier for dataset {name!r}; known: {sorted(VERIFIERS)}")
        scores.extend(VERIFIERS[name]([completion], ground_truth=[truth]))
    return scores


__all__ = ["VERIFIERS", "final_number", "number_reward", "verify"]
