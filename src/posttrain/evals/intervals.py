"""Bootstrap intervals over per-item outcomes: the eval stage's confidence intervals and the gate's paired test."""
from __future__ import annotations

import random


def bootstrap_ci(outcomes: list[float], resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean, resampling items with replacement."""
    if not outcomes:
        return (0.0, 0.0)
    rng = random.Random(seed)
    n = len(outcomes)
    means = sorted(sum(rng.choices(outcomes, k=n)) / n for _ in range(resamples))
    return (means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1])


def paired_difference_ci(a: list[float], b: list[float], resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% interval of mean(a) - mean(b) over the same items, resampling items with replacement."""
    rng = random.Random(seed)
    n = len(a)
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    return (means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1])
