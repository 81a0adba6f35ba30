"""data stage: synthesise persona word problems, deduplicate, split off a held-out set, write Tülu formats.

Writes `sft.jsonl` (`messages`), `preference.jsonl` and `rlvr.jsonl` (`messages`, `ground_truth`,
`dataset`), `heldout.jsonl` (same, never trained on) and `report.json` with counts.
"""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from posttrain.data.arithmetic import problems
from posttrain.recipe import Recipe
from posttrain.store import seal, write_json, write_jsonl

FILES = {"sft": "sft.jsonl", "preference": "preference.jsonl", "rlvr": "rlvr.jsonl", "heldout": "heldout.jsonl"}


def _prompt(row: dict) -> str:
    return " ".join(row["messages"][0]["content"].split()).lower()


def run(recipe: Recipe, out_dir: str | Path) -> dict:
    start = time.perf_counter()
    cfg = recipe.data
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = {"heldout": cfg.heldout_rows, "sft": cfg.sft_rows,
             "preference": cfg.preference_prompts, "rlvr": cfg.rlvr_prompts}
    wanted = sum(sizes.values())

    # Exact dedup on the normalised prompt, across every split: no held-out prompt is ever trained on.
    seen: set[str] = set()
    rows, generated = [], 0
    for row in problems(cfg.seed, 4 * wanted, cfg.digits, cfg.operations, cfg.languages):
        generated += 1
        key = _prompt(row)
        if key not in seen:
            seen.add(key)
            rows.append(row)
            if len(rows) == wanted:
                break
    if len(rows) < wanted:
        raise ValueError(f"recipe.data: only {len(rows)} distinct problems with digits={cfg.digits}; "
                         f"asked for {wanted} rows, lower the row counts or raise digits")

    splits, offset = {}, 0
    for name, size in sizes.items():
        splits[name] = rows[offset : offset + size]
        offset += size
    for row in splits["sft"]:
        row["messages"] = row["messages"] + [{"role": "assistant", "content": row["solution"]}]
    for name, split in splits.items():
        write_jsonl(out_dir / FILES[name], split)

    report = {
        "generated": generated,
        "duplicates_dropped": generated - len(rows),
        "rows": {name: len(split) for name, split in splits.items()},
        "languages": dict(Counter(row["language"] for row in rows)),
    }
    write_json(out_dir / "report.json", report)
    seconds = time.perf_counter() - start
    seal(out_dir, "data", recipe.digest(), summary={"rows": report["rows"]}, seconds=seconds)
    print(f"data: wrote {sum(report['rows'].values())} rows to {out_dir} in {seconds:.1f}s")
    return report
