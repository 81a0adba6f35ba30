"""data stage: synthesise persona word problems, deduplicate, split off a held-out set, write Tülu formats.

Writes `sft.jsonl` (`messages`), `preference.jsonl` and `rlvr.jsonl` (`messages`, `ground_truth`,
`dataset`), `heldout.jsonl` (same, never trained on), `heldout_ifeval.jsonl` (held-out instruction-following
tasks, for the `ifeval` benchmark when no IFEval dataset is named), `preference_pairs.jsonl` (the
`kind: preference` sources' chosen/rejected pairs, which DPO trains on beside the judged on-policy pairs) and
`report.json` with counts. Every part is optional: a recipe may take all its sets from sources.
"""
from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path

from posttrain import generators, sandbox
from posttrain.data import coding, instructions
from posttrain.data.arithmetic import leading_carry, problems, solution
from posttrain.data.decontaminate import EvalIndex, decontaminate
from posttrain.data.dedup import near_duplicates
from posttrain.data.formats import FILES
from posttrain.data.sources import mix
from posttrain.data.synthesis import ModelWriter, Tally, perturb, persona_descriptions, retell, verified
from posttrain.recipe import Recipe
from posttrain.store import finished, seal, write_json, write_jsonl

def prompt_text(row: dict) -> str:
    """The first user turn of any Tülu row, whitespace- and case-normalised: what dedup compares."""
    turns = row.get("messages") or row.get("chosen") or []
    first = next((m.get("content", "") for m in turns if isinstance(m, dict) and m.get("role") == "user"), "")
    return " ".join(str(first or row.get("prompt", "")).split()).lower()


def eval_text(row: dict) -> str:
    """A benchmark item's own text (GSM8K question, MATH problem, MMLU question), not our prompt around it:
    the words we add would dilute coverage, so a short question planted in training data would slip through."""
    return row.get("question") or row.get("problem") or row["messages"][-1]["content"]


def eval_index(recipe: Recipe, splits: dict[str, list[dict]]) -> EvalIndex:
    cfg = recipe.data.decontamination
    index = EvalIndex(n=cfg.n)
    if "heldout" in cfg.eval_sets:
        index.add("heldout", [row["messages"][0]["content"] for row in splits["heldout"]])
    if "ifeval" in cfg.eval_sets:
        from posttrain.evals import ifeval_rows

        index.add("ifeval", [row["messages"][0]["content"] for row in ifeval_rows(recipe, splits["heldout_ifeval"])])
    if "humaneval" in cfg.eval_sets:
        from posttrain.evals import humaneval

        index.add("humaneval", [item["prompt"] for item in humaneval.problems()])
    for name in {"gsm8k", "math500", "mmlu"} & set(cfg.eval_sets):
        from posttrain.evals import olmo

        index.add(name, [eval_text(row) for row in getattr(olmo, name)(recipe.eval.hf_datasets.get(name))])
    return index


def decontaminate_splits(recipe: Recipe, splits: dict[str, list[dict]]) -> dict:
    """Filter every training split against every eval set in place; the report per training split."""
    cfg = recipe.data.decontamination
    index = eval_index(recipe, splits)
    report = {}
    for name in ("sft", "preference", "rlvr", "preference_pairs"):
        splits[name], report[name] = decontaminate(splits[name], index, cfg.threshold)
        share = report[name]["rows_removed"] / max(1, report[name]["rows_scanned"])
        if cfg.action == "fail" and share > cfg.fail_above:
            raise ValueError(f"data: {name} is contaminated: {report[name]['rows_removed']} of "
                             f"{report[name]['rows_scanned']} rows overlap eval sets {sorted(report[name]['by_eval_set'])} "
                             f"(recipe.data.decontamination.fail_above = {cfg.fail_above})")
    return report


def _unique(rows, count: int, seen: set[str], attempts: int) -> tuple[list[dict], int]:
    """Up to `count` rows whose normalised prompt is new to `seen` (updated), from at most `attempts` rows."""
    kept, tried = [], 0
    for row in rows:
        tried += 1
        key = prompt_text(row)
        if key not in seen:
            seen.add(key)
            kept.append(row)
            if len(kept) == count or tried >= attempts:
                break
    return kept, tried - len(kept)


def family_rows(syn) -> dict[str, int]:
    """Rows the recipe asks of each non-math synthetic group (`data.synthesis`)."""
    return {"heldout_ifeval": syn.heldout_ifeval_rows, "sft_ifeval": syn.ifeval_rows, "sft_code": syn.code_rows,
            "rlvr_ifeval": syn.rlvr_ifeval_rows}


def _template_family(family, name: str, seed: int, count: int, languages, tally: Tally) -> list[dict]:
    rng = random.Random(f"{seed}:{name}")
    rows = [family.task(rng, rng.choice(languages)) for _ in range(count)]
    tally.generated[name.split("_")[1]] += len(rows)
    return verified(rows, tally, name.split("_")[1])


def synthesise(recipe: Recipe, cache_dir: Path, tally: Tally) -> dict[str, list[dict]]:
    """Candidate rows per group, in dedup priority order: held-out first, then training math (seeds with
    their augmentations), then the other families. Every row has passed its own verifier."""
    cfg, syn = recipe.data, recipe.data.synthesis
    training = cfg.sft_rows + cfg.preference_prompts + cfg.rlvr_prompts
    seeds_needed = -(-int(training * 1.15 + 10) // (1 + syn.perturbations + syn.retellings))
    seen: set[str] = set()
    seed = recipe.seed_for("data")
    stream = problems(seed, 4 * (cfg.heldout_rows + training), cfg.digits, cfg.operations, cfg.languages)
    if not cfg.heldout_rows + training:  # the arithmetic family is off: no math rows at all
        stream, seeds_needed = iter(()), 0
    heldout, dropped_h = _unique(stream, int(cfg.heldout_rows * 1.15) + 10, seen, 4 * cfg.heldout_rows + 40)
    writer = None
    if syn.backend == "template":
        seeds, dropped_s = _unique(stream, seeds_needed, seen, 4 * seeds_needed)
        tally.generated["math"] += len(heldout) + len(seeds) + dropped_h + dropped_s
    else:
        writer = ModelWriter(generators.from_config(syn.backend, model=syn.model, url=syn.url,
                                                    api_key_env=syn.api_key_env, concurrency=syn.concurrency,
                                                    cache_dir=str(cache_dir)),
                             persona_descriptions(syn.personas), cfg.languages, random.Random(seed))
        seeds = []
        for _ in range(4 if seeds_needed else 0):  # a model's answers fail verification at a rate nobody knows up front: ask again
            seeds += writer.math(seeds_needed - len(seeds), tally)
            if len(seeds) >= seeds_needed:
                break
    tally.exact_duplicates = dropped_h + (0 if writer else dropped_s)  # repeats in the template stream

    rng = random.Random(f"{seed}:augment")
    math = []
    for seed_row in seeds:
        math.append(seed_row)
        variants = [perturb(seed_row, rng) for _ in range(syn.perturbations)]
        tally.augmented["not_perturbable"] += variants.count(None)  # model-written: no operands to re-number
        math += [r for r in variants if r is not None]
        if writer is None:
            math += [r for r in (retell(seed_row, rng, cfg.languages) for _ in range(syn.retellings)) if r is not None]
    if writer is not None and syn.retellings:
        math += writer.retell([r for r in seeds for _ in range(syn.retellings)], tally)
    augmented = [r for r in math if "augmented" in r]
    tally.augmented.update(Counter(r["augmented"] for r in augmented))
    passed = {id(r) for r in verified(augmented, tally, "augmented")}
    math = [r for r in math if "augmented" not in r or id(r) in passed]  # each seed next to its variants

    groups = {"heldout": heldout, "heldout_ifeval": [], "math": math, "sft_ifeval": [], "sft_code": [],
              "rlvr_ifeval": []}
    for name, count in family_rows(syn).items():
        if not count:
            continue
        extra = int(count * (1.3 if writer else 2)) + 10  # what dedup drops; templates repeat more
        if writer is not None:
            groups[name] = writer.code(extra, tally) if name == "sft_code" else writer.ifeval(extra, tally)
        else:
            family = coding if name == "sft_code" else instructions
            groups[name] = _template_family(family, name, seed, extra, cfg.languages, tally)
    return groups


def teach(rows: list[dict], slip: float, rng: random.Random) -> int:
    """Append each SFT row's assistant turn: its solution, or with probability `slip` (math rows that carry or
    borrow into the leading column) the solution of a teacher who forgets that carry. Returns the slips."""
    slips = 0
    for row in rows:
        content = row["solution"]
        if slip and "operands" in row and leading_carry(*row["operands"], row["operation"]) and rng.random() < slip:
            content = solution(*row["operands"], row["operation"], row["language"], slip=True)
            row["teacher_slip"] = True
            slips += 1
        row["messages"] = row["messages"] + [{"role": "assistant", "content": content}]
    return slips


def _training_set(group: str) -> str:
    """The set a group's rows train in: sources by kind; synthetic groups each their own."""
    return group.removeprefix("source_").split("_")[0]


def run(recipe: Recipe, out_dir: str | Path) -> dict:
    start = time.perf_counter()
    cfg, syn = recipe.data, recipe.data.synthesis
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if done := finished(out_dir, "data", recipe.digest()):
        return json.loads((out_dir / "report.json").read_text())

    sandbox.use(recipe.sandbox)  # synthesised code rows are checked by running them
    tally = Tally()
    groups = synthesise(recipe, Path(syn.cache_dir) if syn.cache_dir else out_dir / "generator-cache", tally)
    mixed, quarantine, source_counts = mix(cfg.sources, recipe.seed_for("data"), cfg.max_quarantine_fraction, cfg.max_row_chars)
    for kind, rows in mixed.items():
        groups[f"source_{kind}"] = rows
    write_jsonl(out_dir / "quarantine.jsonl", quarantine)

    # Exact, then near-duplicate (MinHash) dedup on the prompt, within and across every group and source, in
    # priority order: held-out items first, so no training row repeats or nearly repeats one.
    order = [(name, row) for name, rows in groups.items() for row in rows]
    seen: set = set()
    exact: set[int] = set()
    for i, (name, row) in enumerate(order):
        key = prompt_text(row)
        if not cfg.dedup_across_sets and not name.startswith("heldout"):
            key = (_training_set(name), key) if key not in seen else key  # a held-out prompt is seen everywhere
        if key in seen:
            exact.add(i)
        seen.add(key)
    keep = [i for i in range(len(order)) if i not in exact]
    near = set()
    if cfg.near_duplicate_threshold < 1:
        found = near_duplicates([prompt_text(order[i][1]) for i in keep], cfg.near_duplicate_threshold)
        near = {keep[j] for j in found}
    dropped: Counter = Counter({"math/exact": tally.exact_duplicates})
    for source in source_counts.values():
        source["duplicates"] = 0
    for how, indices in (("exact", exact), ("near", near)):
        for i in indices:
            name, row = order[i]
            dropped[f"{name}/{how}"] += 1
            if "source" in row:
                source_counts[row["source"]]["duplicates"] += 1
    gone = near | exact
    kept: dict[str, list[dict]] = {name: [] for name in groups}
    for i, (name, row) in enumerate(order):
        if i not in gone:
            kept[name].append(row)

    wanted = family_rows(syn)
    sizes = {"heldout": cfg.heldout_rows, "sft": cfg.sft_rows, "preference": cfg.preference_prompts,
             "rlvr": cfg.rlvr_prompts}
    math = kept["math"]
    if len(kept["heldout"]) < cfg.heldout_rows or len(math) < sizes["sft"] + sizes["preference"] + sizes["rlvr"]:
        raise ValueError(f"recipe.data: only {len(kept['heldout']) + len(math)} distinct problems with "
                         f"digits={cfg.digits}; asked for {sum(sizes.values())} rows, lower the row counts or raise digits")
    for name, count in wanted.items():
        if len(kept[name]) < count:
            raise ValueError(f"recipe.data.synthesis: only {len(kept[name])} distinct {name} rows survived "
                             f"verification and dedup, {count} asked for")
    splits = {"heldout": kept["heldout"][: cfg.heldout_rows],
              "heldout_ifeval": kept["heldout_ifeval"][: syn.heldout_ifeval_rows]}
    offset = 0
    for name in ("sft", "preference", "rlvr"):
        splits[name] = math[offset : offset + sizes[name]]
        offset += sizes[name]
    splits["sft"] += kept["sft_ifeval"][: syn.ifeval_rows] + kept["sft_code"][: syn.code_rows]
    splits["rlvr"] += kept["rlvr_ifeval"][: syn.rlvr_ifeval_rows]
    slips = teach(splits["sft"], cfg.teacher_slip, random.Random(f"{recipe.seed_for('data')}:teacher"))
    for kind in ("sft", "rlvr"):
        splits[kind] += kept[f"source_{kind}"]
    splits["preference_pairs"] = kept["source_preference"]  # pairs, not prompts: the preference stage adds them
    contamination = decontaminate_splits(recipe, splits)
    for name, split in splits.items():
        write_jsonl(out_dir / FILES[name], split)

    report = {
        "rows": {name: len(split) for name, split in splits.items()},
        "languages": {name: dict(Counter(r.get("language", "?") for r in split)) for name, split in splits.items()},
        "families": {name: dict(Counter(r.get("family", r.get("source", "?")) for r in split))
                     for name, split in splits.items()},
        "synthesis": {"backend": syn.backend, **tally.as_dict()},
        "duplicates_dropped": {"exact": len(exact) + tally.exact_duplicates, "near": len(near),
                               "by_group": dict(sorted(dropped.items()))},
        "sources": source_counts,
        "quarantined": len(quarantine),
        "teacher_slips": slips,
        "decontamination": contamination,
    }
    write_json(out_dir / "report.json", report)
    seconds = time.perf_counter() - start
    seal(out_dir, "data", recipe.digest(), summary={"rows": report["rows"]}, seconds=seconds)
    print(f"data: wrote {sum(report['rows'].values())} rows to {out_dir} in {seconds:.1f}s")
    return report
