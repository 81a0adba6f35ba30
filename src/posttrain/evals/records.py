"""One score record per (benchmark, model), whichever engine ran it: score, n, 95% bootstrap interval,
per-item outcomes (for paired comparisons), per-language scores, further metrics and a few samples.
The gate and the report read only these records."""
from __future__ import annotations

from collections import defaultdict


def record(rows: list[dict], outcomes: list[float], completions: list[str], engine: str = "registry",
           metrics: dict[str, list[float]] | None = None, decoding: str = "greedy") -> dict:
    """`decoding`: how the completions were drawn ("greedy", or e.g. "10 samples at temperature 0.8, pass@1"),
    which the reports print beside the scores."""
    from posttrain.evals.intervals import bootstrap_ci

    if len(outcomes) != len(rows):
        raise ValueError(f"score record: {len(outcomes)} outcomes for {len(rows)} items")
    by_language = defaultdict(list)
    for row, outcome in zip(rows, outcomes):
        by_language[row.get("language", "en")].append(outcome)
    low, high = bootstrap_ci(outcomes)
    result = {
        "score": sum(outcomes) / len(outcomes),
        "n": len(outcomes),
        "ci95": [low, high],
        "engine": engine,
        "decoding": decoding,
        "languages": {lang: {"score": sum(v) / len(v), "n": len(v)} for lang, v in sorted(by_language.items())},
        "outcomes": outcomes,
        "samples": [{"prompt": rows[i]["messages"][-1]["content"][-300:], "completion": completions[i][:300],
                     "correct": bool(outcomes[i])} for i in range(min(3, len(rows)))],
    }
    if metrics:
        result["metrics"] = {name: {"score": sum(v) / len(v), "ci95": list(bootstrap_ci(v))}
                             for name, v in metrics.items()}
    return result


def gaps(results: dict[str, dict[str, dict]], pairs: list[tuple[str, str]]) -> dict[str, list[dict]]:
    """Per benchmark, for each (model, baseline) pair, the model's score minus the baseline's on the same
    items, with the paired bootstrap 95% interval of that difference."""
    from posttrain.evals.intervals import paired_difference_ci

    found = {}
    for name, by_label in results.items():
        found[name] = []
        for model, baseline in pairs:
            ours, theirs = by_label[model], by_label[baseline]
            low, high = paired_difference_ci(ours["outcomes"], theirs["outcomes"])
            found[name].append({"model": model, "baseline": baseline, "gap": ours["score"] - theirs["score"],
                                "ci95": [low, high]})
    return found
