"""Duplicate removal on the prompt: exact (the normalised first user turn), then near duplicates with MinHash
LSH (datasketch): rows whose word-trigram sets overlap more than `threshold` (estimated Jaccard) with an
earlier row are dropped, within and across sources."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from posttrain.data.decontaminate import normalise


def _shingles(text: str) -> list[bytes]:
    words = normalise(text)
    grams = [" ".join(words[i : i + 3]) for i in range(max(1, len(words) - 2))]
    return [g.encode() for g in grams]


def near_duplicates(texts: list[str], threshold: float = 0.8, num_perm: int = 64, seed: int = 0) -> list[int]:
    """Indices of texts that nearly repeat an earlier one (the first of each group is kept)."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    signatures = MinHash.bulk([_shingles(t) for t in texts], num_perm=num_perm, seed=seed)
    dropped = []
    for index, signature in enumerate(signatures):
        if lsh.query(signature):
            dropped.append(index)
        else:
            lsh.insert(str(index), signature)
    return dropped


def prompt_text(row: dict) -> str:
    """The first user turn of any Tülu row, whitespace- and case-normalised: what dedup compares."""
    turns = row.get("messages") or row.get("chosen") or []
    first = next((m.get("content", "") for m in turns if isinstance(m, dict) and m.get("role") == "user"), "")
    return " ".join(str(first or row.get("prompt", "")).split()).lower()


def _training_set(group: str) -> str:
    """The set a group's rows train in: sources by kind; synthetic groups each their own."""
    return group.removeprefix("source_").split("_")[0]


@dataclass
class Deduplicated:
    kept: dict[str, list[dict]]  # group -> its rows that survived, in order
    exact: int  # rows dropped as exact repeats
    near: int  # rows dropped as near repeats
    by_group: Counter  # "group/exact" or "group/near" -> rows dropped
    by_source: Counter  # source name -> rows dropped


def drop_duplicates(groups: dict[str, list[dict]], across_sets: bool, threshold: float) -> Deduplicated:
    """Exact, then near-duplicate (MinHash, when `threshold` < 1) dedup on the prompt, within and across every
    group, in the groups' order: held-out items first, so no training row repeats or nearly repeats one.
    `across_sets` false: a prompt may repeat in two training sets (never a held-out one)."""
    order = [(name, row) for name, rows in groups.items() for row in rows]
    seen: set = set()
    exact: set[int] = set()
    for i, (name, row) in enumerate(order):
        key = prompt_text(row)
        if not across_sets and not name.startswith("heldout"):
            key = (_training_set(name), key) if key not in seen else key  # a held-out prompt is seen everywhere
        if key in seen:
            exact.add(i)
        seen.add(key)
    keep = [i for i in range(len(order)) if i not in exact]
    near = set()
    if threshold < 1:
        found = near_duplicates([prompt_text(order[i][1]) for i in keep], threshold)
        near = {keep[j] for j in found}
    by_group: Counter = Counter()
    by_source: Counter = Counter()
    for how, indices in (("exact", exact), ("near", near)):
        for i in indices:
            name, row = order[i]
            by_group[f"{name}/{how}"] += 1
            if "source" in row:
                by_source[row["source"]] += 1
    kept: dict[str, list[dict]] = {name: [] for name in groups}
    for i, (name, row) in enumerate(order):
        if i not in exact | near:
            kept[name].append(row)
    return Deduplicated(kept, len(exact), len(near), by_group, by_source)
