"""eval stage: every model on the same held-out items, greedy, scored by the row's verifier.

Writes `scores.json`: per benchmark, per model the score, n and a bootstrap 95% confidence interval,
plus per-language scores and a few sample completions.
"""
from __future__ import annotations

import random
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from posttrain.data.formats import read_rows
from posttrain.recipe import Recipe
from posttrain.stages.data import FILES
from posttrain.store import seal, write_json
from posttrain.verifiers import verify

BENCHMARK = "arithmetic"  # the synthetic held-out set; the benchmark registry adds real ones (issue 7)


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


def promoted_model(recipe: Recipe, dest: Path) -> Path | None:
    """The registry's latest entry of this recipe, downloaded, when non-regression is asked for."""
    from posttrain import registry

    entry = registry.latest(recipe.promote.registry, recipe.name) if recipe.promote.non_regression else None
    return registry.fetch_model(entry, dest) if entry else None


def score_model(recipe: Recipe, model_dir: Path, rows: list[dict]) -> dict:
    from posttrain.generation import generate, load

    model, tokenizer = load(str(model_dir), trust_remote_code=recipe.model.trust_remote_code)
    completions = [c[0] for c in generate(model, tokenizer, [r["messages"] for r in rows],
                                          recipe.eval.max_new_tokens, recipe.eval.batch_size)]
    outcomes = verify(completions, dataset=[r["dataset"] for r in rows], ground_truth=[r["ground_truth"] for r in rows])
    by_language = defaultdict(list)
    for row, outcome in zip(rows, outcomes):
        by_language[row.get("language", "en")].append(outcome)
    low, high = bootstrap_ci(outcomes)
    return {
        "score": sum(outcomes) / len(outcomes),
        "n": len(outcomes),
        "ci95": [low, high],
        "languages": {lang: {"score": sum(v) / len(v), "n": len(v)} for lang, v in sorted(by_language.items())},
        "outcomes": outcomes,
        "samples": [{"prompt": rows[i]["messages"][-1]["content"], "completion": completions[i],
                     "ground_truth": rows[i]["ground_truth"], "correct": bool(outcomes[i])} for i in range(3)],
    }


def run(recipe: Recipe, data_dir: str | Path, models: dict[str, str | Path], out_dir: str | Path) -> dict:
    """Score `models` (label -> directory, in pipeline order: the first is the baseline, the last the candidate),
    plus the registry's promoted model when the recipe asks for non-regression."""
    start = time.perf_counter()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = read_rows(data_dir / FILES["heldout"], "rlvr")
    candidate, baseline = list(models)[-1], list(models)[0]
    with tempfile.TemporaryDirectory() as tmp:
        if promoted := promoted_model(recipe, Path(tmp) / "promoted"):
            models = {"promoted": promoted, **models}
        results = _score_all(recipe, models, rows)
    scores = {"candidate": candidate, "baseline": baseline, "promoted": "promoted" if promoted else None,
              "models": list(models), "benchmarks": {BENCHMARK: results}}
    write_json(out_dir / "scores.json", scores)
    seconds = time.perf_counter() - start
    summary = {label: round(r["score"], 4) for label, r in results.items()}
    models.pop("promoted", None)  # a temporary download: not an input manifest of this run
    seal(out_dir, "eval", recipe.digest(), inputs={"data": data_dir, **models}, summary=summary, seconds=seconds)
    return scores


def _score_all(recipe: Recipe, models: dict[str, Path], rows: list[dict]) -> dict:
    results = {}
    for label, model_dir in models.items():
        results[label] = score_model(recipe, Path(model_dir), rows)
        print(f"eval: {label}: {BENCHMARK} {results[label]['score']:.3f} (n={len(rows)})")
    return results
