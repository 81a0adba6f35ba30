"""The data stage's splits, carved from the deduplicated groups in the recipe's sizes, and the counts its
report.json gives per split."""
from __future__ import annotations

from collections import Counter

from posttrain.data.synthesis import family_rows


def synthetic_splits(kept: dict[str, list[dict]], cfg) -> dict[str, list[dict]]:
    """The held-out and training splits from the synthetic groups (`cfg`: `recipe.data`): math rows cut in
    order into sft, preference and rlvr, the other families appended where they train. A group that came up
    short of what the recipe asks is an error naming the fields to change."""
    syn = cfg.synthesis
    sizes = {"heldout": cfg.heldout_rows, "sft": cfg.sft_rows, "preference": cfg.preference_prompts,
             "rlvr": cfg.rlvr_prompts}
    math = kept["math"]
    if len(kept["heldout"]) < cfg.heldout_rows or len(math) < sizes["sft"] + sizes["preference"] + sizes["rlvr"]:
        raise ValueError(f"recipe.data: only {len(kept['heldout']) + len(math)} distinct problems with "
                         f"digits={cfg.digits}; asked for {sum(sizes.values())} rows, lower the row counts or raise digits")
    for name, count in family_rows(syn).items():
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
    return splits


def add_sources(splits: dict[str, list[dict]], kept: dict[str, list[dict]]) -> None:
    """The sources' rows after the synthetic ones, in place; preference sources give pairs, not prompts, so
    they form their own split (the preference stage adds them to its judged pairs)."""
    for kind in ("sft", "rlvr"):
        splits[kind] += kept[f"source_{kind}"]
    splits["preference_pairs"] = kept["source_preference"]


def counts(splits: dict[str, list[dict]]) -> dict:
    """Rows, languages and families per split."""
    return {
        "rows": {name: len(split) for name, split in splits.items()},
        "languages": {name: dict(Counter(r.get("language", "?") for r in split)) for name, split in splits.items()},
        "families": {name: dict(Counter(r.get("family", r.get("source", "?")) for r in split))
                     for name, split in splits.items()},
    }
