"""data stage: synthesise persona word problems, deduplicate, split off a held-out set, write Tülu formats.

Writes `sft.jsonl` (`messages`), `preference.jsonl` and `rlvr.jsonl` (`messages`, `ground_truth`,
`dataset`), `heldout.jsonl` (same, never trained on) and `report.json` with counts.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from posttrain.data.arithmetic import problems
from posttrain.data.decontaminate import EvalIndex, decontaminate
from posttrain.data.dedup import near_duplicates
from posttrain.data.sources import mix
from posttrain.recipe import Recipe
from posttrain.store import finished, seal, write_json, write_jsonl

FILES = {"sft": "sft.jsonl", "preference": "preference.jsonl", "rlvr": "rlvr.jsonl", "heldout": "heldout.jsonl"}


def _prompt(row: dict) -> str:
    return " ".join(row["messages"][0]["content"].split()).lower()


def eval_index(recipe: Recipe, heldout: list[dict]) -> EvalIndex:
    cfg = recipe.data.decontamination
    index = EvalIndex(n=cfg.n)
    if "heldout" in cfg.eval_sets:
        index.add("heldout", [row["messages"][0]["content"] for row in heldout])
    if "humaneval" in cfg.eval_sets:
        from posttrain.evals import humaneval

        index.add("humaneval", [item["prompt"] for item in humaneval.problems()])
    for name in {"gsm8k", "math500"} & set(cfg.eval_sets):
        from posttrain.evals import olmo

        index.add(name, [row["messages"][0]["content"] for row in getattr(olmo, name)(recipe.eval.hf_datasets.get(name))])
    return index


def decontaminate_splits(recipe: Recipe, splits: dict[str, list[dict]]) -> dict:
    """Filter every training split against every eval set in place; the report per training split."""
    cfg = recipe.data.decontamination
    index = eval_index(recipe, splits["heldout"])
    report = {}
    for name in ("sft", "preference", "rlvr"):
        splits[name], report[name] = decontaminate(splits[name], index, cfg.threshold)
        share = report[name]["rows_removed"] / max(1, report[name]["rows_scanned"])
        if cfg.action == "fail" and share > cfg.fail_above:
            raise ValueError(f"data: {name} is contaminated: {report[name]['rows_removed']} of "
                             f"{report[name]['rows_scanned']} rows overlap eval sets {sorted(report[name]['by_eval_set'])} "
                             f"(recipe.data.decontamination.fail_above = {cfg.fail_above})")
    return report


def run(recipe: Recipe, out_dir: str | Path) -> dict:
    start = time.perf_counter()
    cfg = recipe.data
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if done := finished(out_dir, "data", recipe.digest()):
        return json.loads((out_dir / "report.json").read_text())
    sizes = {"heldout": cfg.heldout_rows, "sft": cfg.sft_rows,
             "preference": cfg.preference_prompts, "rlvr": cfg.rlvr_prompts}
    wanted = sum(sizes.values())

    # Exact, then near-duplicate (MinHash) dedup on the prompt, across every split: no held-out prompt, or
    # a near copy of one, is ever trained on. A 15% surplus covers what near-dedup drops.
    seen: set[str] = set()
    rows, generated = [], 0
    for row in problems(cfg.seed, 4 * wanted, cfg.digits, cfg.operations, cfg.languages):
        generated += 1
        key = _prompt(row)
        if key not in seen:
            seen.add(key)
            rows.append(row)
            if len(rows) == int(wanted * 1.15) + 10:
                break
    exact_duplicates = generated - len(rows)
    near = set(near_duplicates([r["messages"][0]["content"] for r in rows], cfg.near_duplicate_threshold)
               if cfg.near_duplicate_threshold < 1 else [])
    rows = [row for i, row in enumerate(rows) if i not in near][:wanted]
    if len(rows) < wanted:
        raise ValueError(f"recipe.data: only {len(rows)} distinct problems with digits={cfg.digits}; "
                         f"asked for {wanted} rows, lower the row counts or raise digits")

    splits, offset = {}, 0
    for name, size in sizes.items():
        splits[name] = rows[offset : offset + size]
        offset += size
    for row in splits["sft"]:
        row["messages"] = row["messages"] + [{"role": "assistant", "content": row["solution"]}]
    mixed, quarantine, source_counts = mix(cfg.sources, cfg.seed, cfg.max_quarantine_fraction, cfg.max_row_chars)
    for kind, extra in mixed.items():
        splits[kind] += extra
    write_jsonl(out_dir / "quarantine.jsonl", quarantine)
    contamination = decontaminate_splits(recipe, splits)
    for name, split in splits.items():
        write_jsonl(out_dir / FILES[name], split)

    report = {
        "generated": generated,
        "duplicates_dropped": {"exact": exact_duplicates, "near": len(near)},
        "rows": {name: len(split) for name, split in splits.items()},
        "languages": dict(Counter(row["language"] for row in rows)),
        "sources": source_counts,
        "quarantined": len(quarantine),
        "decontamination": contamination,
    }
    write_json(out_dir / "report.json", report)
    seconds = time.perf_counter() - start
    seal(out_dir, "data", recipe.digest(), summary={"rows": report["rows"]}, seconds=seconds)
    print(f"data: wrote {sum(report['rows'].values())} rows to {out_dir} in {seconds:.1f}s")
    return report
