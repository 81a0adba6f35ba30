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

from posttrain import sandbox
from posttrain.data.arithmetic import teach
from posttrain.data.decontaminate import decontaminate_splits, eval_index
from posttrain.data.dedup import drop_duplicates
from posttrain.data.formats import FILES
from posttrain.data.sources import mix
from posttrain.data.splits import add_sources, counts, synthetic_splits
from posttrain.data.synthesis import Tally, synthesise
from posttrain.recipe import Recipe
from posttrain.store import finished, seal, write_json, write_jsonl


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

    found = drop_duplicates(groups, cfg.dedup_across_sets, cfg.near_duplicate_threshold)
    for name, source in source_counts.items():
        source["duplicates"] = found.by_source[name]
    dropped = Counter({"math/exact": tally.exact_duplicates})  # repeats in the template stream, before dedup
    dropped.update(found.by_group)

    splits = synthetic_splits(found.kept, cfg)
    slips = teach(splits["sft"], cfg.teacher_slip, random.Random(f"{recipe.seed_for('data')}:teacher"))
    add_sources(splits, found.kept)
    contamination = decontaminate_splits(splits, eval_index(recipe, splits), cfg.decontamination)
    for name, split in splits.items():
        write_jsonl(out_dir / FILES[name], split)

    report = {
        **counts(splits),
        "synthesis": {"backend": syn.backend, **tally.as_dict()},
        "duplicates_dropped": {"exact": found.exact + tally.exact_duplicates, "near": found.near,
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
