"""eval stage: every model on the same items of every benchmark in the recipe, scored (greedy; with
`eval.protocol_sampling` a benchmark whose protocol samples draws its n samples per item, pass@k).

Writes `scores.json`: per benchmark, per model the score, n, a bootstrap 95% confidence interval, the
per-item outcomes (for paired comparisons), per-language scores and a few sample completions; and which eval
sets the data stage decontaminated against, for the gate.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from posttrain import sandbox
from posttrain.reporting import progress
from posttrain.evals import BENCHMARKS
from posttrain.evals.protocol import cut, pass_at
from posttrain.evals.records import gaps, record
from posttrain.recipe import Recipe
from posttrain.store import seal, write_json
from posttrain.training import lora


def promoted_model(recipe: Recipe, dest: Path) -> Path | None:
    """The registry's latest entry of this recipe, downloaded, when non-regression is asked for."""
    from posttrain import registry

    entry = registry.latest(recipe.promote.registry, recipe.name) if recipe.promote.non_regression else None
    return registry.fetch_model(entry, dest) if entry else None


def score_model(recipe: Recipe, model_dir: Path, suites: dict[str, list[dict]]) -> dict[str, dict]:
    """Completions of one model on every benchmark's rows, scored; per benchmark a score record. With
    `eval.engine: lm_eval` the benchmarks lm-eval has run there, the rest here."""
    results = {}
    if recipe.eval.engine == "lm_eval":
        from posttrain.evals import harness

        if wanted := {name: rows for name, rows in suites.items() if name in harness.TASKS}:
            with tempfile.TemporaryDirectory(prefix="merged-") as tmp:  # lm-eval reads full weights only
                full = lora.materialise(model_dir, tmp, recipe.model.trust_remote_code) \
                    if lora.is_adapter(model_dir) else model_dir
                results.update(harness.score(recipe, str(full), wanted))
    if not (rest := [name for name in suites if name not in results]):
        return results
    from posttrain.generation import generate, load, release

    model, tokenizer = load(str(model_dir), trust_remote_code=recipe.model.trust_remote_code)
    for name in rest:
        rows, benchmark = suites[name], BENCHMARKS[name]
        protocol = benchmark.protocol if recipe.eval.protocol_sampling else None
        n = protocol.samples if protocol else 1
        temperature = protocol.temperature if protocol else 0.0
        samples = generate(model, tokenizer, [r["messages"] for r in rows], benchmark.max_new_tokens(recipe),
                           recipe.eval.batch_size, num_samples=n, temperature=temperature,
                           seed=recipe.seed_for("eval"), max_prompt_tokens=recipe.eval.max_prompt_tokens)
        stop = benchmark.protocol.stop if benchmark.protocol else ()
        samples = [[cut(c, stop) for c in cs] for cs in samples]
        completions = [c[0] for c in samples]
        if n == 1:
            outcomes = benchmark.score(rows, completions)
            metrics = benchmark.metrics(rows, completions) if benchmark.metrics else None
        else:  # pass@k over n samples per item, with the unbiased estimator
            passed = benchmark.score([r for r in rows for _ in range(n)], [c for cs in samples for c in cs])
            per_item = [passed[i * n:(i + 1) * n] for i in range(len(rows))]
            outcomes = pass_at(per_item, protocol.k)
            metrics = {"pass@1": pass_at(per_item, 1), f"pass@{protocol.k}": outcomes}
        way = (f"{n} sample{'s' if n > 1 else ''} at temperature {temperature:g}" + (f", pass@{protocol.k}" if n > 1
               else "")) if temperature else "greedy"
        results[name] = record(rows, outcomes, completions, metrics=metrics, decoding=way)
    release(model)
    return results


def score_models(recipe: Recipe, models: dict[str, Path], suites: dict[str, list[dict]],
                 on_done=None) -> dict[str, dict]:
    """Every model scored, one at a time; `on_done(models scored, result)` after each. With vLLM each model is
    scored in a fresh process: a process keeps one vLLM engine at most, and its GPU memory is returned when the
    process ends (a second engine in the same process runs out of memory, a known vLLM behaviour). Without
    vLLM: in this process, each freed before the next."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from posttrain.generation import vllm_wanted

    results = {}
    for label, path in models.items():
        if vllm_wanted():
            with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
                results[label] = pool.submit(score_model, recipe, Path(path), suites).result()
        else:
            results[label] = score_model(recipe, Path(path), suites)
        if on_done:
            on_done(len(results), results[label])
    return results


def run(recipe: Recipe, data_dir: str | Path, models: dict[str, str | Path], out_dir: str | Path) -> dict:
    """Score `models` (label -> directory, in pipeline order: the first is the baseline, the last the candidate),
    plus the registry's promoted model when the recipe asks for non-regression."""
    start = time.perf_counter()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    suites = {name: BENCHMARKS[name].rows(recipe, data_dir) for name in recipe.eval.benchmarks}
    totals = {name: len(rows) for name, rows in suites.items()}
    suites = {name: rows[:recipe.eval.limit.get(name, len(rows))] for name, rows in suites.items()}
    sandbox.use(recipe.sandbox)  # HumanEval's and code rows' programs run where the recipe says, or nowhere
    candidate, baseline = list(models)[-1], list(models)[0]
    with tempfile.TemporaryDirectory() as tmp:
        if promoted := promoted_model(recipe, Path(tmp) / "promoted"):
            models = {"promoted": promoted, **models}
        if clash := sorted(set(recipe.eval.baselines) & set(models)):
            raise ValueError(f"recipe.eval.baselines: labels {clash} are already this run's models")
        everyone = {**models, **recipe.eval.baselines}
        by_model = score_models(recipe, everyone, suites, on_done=lambda done, result: progress.report(
            "eval", done, len(everyone), {"score": next(iter(result.values()))["score"]}))
    labels = [*models, *recipe.eval.baselines]
    results = {name: {label: by_model[label][name] for label in labels} for name in suites}
    for name, by_label in results.items():
        print("eval: " + name + ": " + ", ".join(f"{label} {r['score']:.3f}" for label, r in by_label.items())
              + f" (n={len(suites[name])})")
    decontamination = json.loads((data_dir / "report.json").read_text()).get("decontamination")
    pairs = [(stage, label) for stage, label in recipe.eval.counterparts.items() if stage in models] or [
        (candidate, label) for label in recipe.eval.baselines]
    scores = {"candidate": candidate, "baseline": baseline, "promoted": "promoted" if promoted else None,
              "models": labels, "benchmarks": results,
              "baselines": dict(recipe.eval.baselines), "gaps": gaps(results, pairs) if pairs else {},
              "data": {"decontaminated_against": list(recipe.data.decontamination.eval_sets) if decontamination else [],
                       "eval_sets": {name: BENCHMARKS[name].eval_set for name in suites}},
              "sandbox": sandbox.isolation_used(recipe.sandbox),  # how model-written code was boxed; None: none ran
              "limited": {name: {"n": len(suites[name]), "of": totals[name]}  # eval.limit: a subset was scored
                          for name in suites if len(suites[name]) < totals[name]}}
    write_json(out_dir / "scores.json", scores)
    seconds = time.perf_counter() - start
    summary = {f"{label}/{name}" if len(results) > 1 else label: round(r["score"], 4)
               for name, by_label in results.items() for label, r in by_label.items()}
    models.pop("promoted", None)  # a temporary download: not an input manifest of this run
    seal(out_dir, "eval", recipe.digest(), inputs={"data": data_dir, **models}, summary=summary, seconds=seconds)
    return scores
