"""eval stage: every model on the same items of every benchmark in the recipe, greedy, scored.

Writes `scores.json`: per benchmark, per model the score, n, a bootstrap 95% confidence interval, the
per-item outcomes (for paired comparisons), per-language scores and a few sample completions; and which eval
sets the data stage decontaminated against, for the gate.
"""
from __future__ import annotations

import json
import random
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from posttrain import progress
from posttrain.evals import BENCHMARKS
from posttrain.recipe import Recipe
from posttrain.store import seal, write_json



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


def score_model(recipe: Recipe, model_dir: Path, suites: dict[str, list[dict]]) -> dict[str, dict]:
    """Greedy completions of one model on every benchmark's rows, scored; per benchmark a result."""
    from posttrain.generation import generate, load

    model, tokenizer = load(str(model_dir), trust_remote_code=recipe.model.trust_remote_code)
    results = {}
    for name, rows in suites.items():
        benchmark = BENCHMARKS[name]
        completions = [c[0] for c in generate(model, tokenizer, [r["messages"] for r in rows],
                                              benchmark.max_new_tokens(recipe), recipe.eval.batch_size,
                                              max_prompt_tokens=recipe.eval.max_prompt_tokens)]
        outcomes = benchmark.score(rows, completions)
        by_language = defaultdict(list)
        for row, outcome in zip(rows, outcomes):
            by_language[row.get("language", "en")].append(outcome)
        low, high = bootstrap_ci(outcomes)
        results[name] = {
            "score": sum(outcomes) / len(outcomes),
            "n": len(outcomes),
            "ci95": [low, high],
            "languages": {lang: {"score": sum(v) / len(v), "n": len(v)} for lang, v in sorted(by_language.items())},
            "outcomes": outcomes,
            "samples": [{"prompt": rows[i]["messages"][-1]["content"][-300:], "completion": completions[i][:300],
                         "correct": bool(outcomes[i])} for i in range(min(3, len(rows)))],
        }
    return results


def run(recipe: Recipe, data_dir: str | Path, models: dict[str, str | Path], out_dir: str | Path) -> dict:
    """Score `models` (label -> directory, in pipeline order: the first is the baseline, the last the candidate),
    plus the registry's promoted model when the recipe asks for non-regression."""
    start = time.perf_counter()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    suites = {name: BENCHMARKS[name].rows(recipe, data_dir) for name in recipe.eval.benchmarks}
    candidate, baseline = list(models)[-1], list(models)[0]
    with tempfile.TemporaryDirectory() as tmp:
        if promoted := promoted_model(recipe, Path(tmp) / "promoted"):
            models = {"promoted": promoted, **models}
        by_model = {}
        for done, (label, path) in enumerate(models.items(), 1):
            by_model[label] = score_model(recipe, Path(path), suites)
            progress.report("eval", done, len(models), {"score": next(iter(by_model[label].values()))["score"]})
    results = {name: {label: by_model[label][name] for label in models} for name in suites}
    for name, by_label in results.items():
        print("eval: " + name + ": " + ", ".join(f"{label} {r['score']:.3f}" for label, r in by_label.items())
              + f" (n={len(suites[name])})")
    decontamination = json.loads((data_dir / "report.json").read_text()).get("decontamination")
    scores = {"candidate": candidate, "baseline": baseline, "promoted": "promoted" if promoted else None,
              "models": list(models), "benchmarks": results,
              "data": {"decontaminated_against": list(recipe.data.decontamination.eval_sets) if decontamination else [],
                       "eval_sets": {name: BENCHMARKS[name].eval_set for name in suites}}}
    write_json(out_dir / "scores.json", scores)
    seconds = time.perf_counter() - start
    summary = {f"{label}/{name}" if len(results) > 1 else label: round(r["score"], 4)
               for name, by_label in results.items() for label, r in by_label.items()}
    models.pop("promoted", None)  # a temporary download: not an input manifest of this run
    seal(out_dir, "eval", recipe.digest(), inputs={"data": data_dir, **models}, summary=summary, seconds=seconds)
    return scores
