"""Training data from outside: HF datasets, saved datasets, and jsonl/parquet files on any fsspec URL.

Each source maps its columns onto a Tülu format, every row is checked (`data.formats`), bad rows go to a
quarantine list with source, row number and reason, and a seeded sample takes the recipe's fraction or
row count. A source whose quarantined share passes the recipe's limit stops the stage with its name.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import fsspec

from posttrain.data.formats import problems

FILE_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".parquet")


class SourceError(ValueError):
    """A source that cannot be read or is too broken to use; the message names it."""


def read_source(path: str, split: str = "train") -> list[dict]:
    """Rows of a file on any fsspec URL, a `save_to_disk` directory, or a HF dataset name."""
    if path.endswith(FILE_SUFFIXES):
        try:
            with fsspec.open(path, "rb", compression="infer") as handle:
                if path.endswith(".parquet"):
                    import pyarrow.parquet as pq

                    return pq.read_table(handle).to_pylist()
                rows = []
                for number, line in enumerate(handle, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError:
                            rows.append({"__unparsable__": f"line {number}: not valid JSON"})
                return rows
        except FileNotFoundError:
            raise SourceError(f"{path}: no such file") from None
    import datasets

    if Path(path).is_dir():
        loaded = datasets.load_from_disk(path)
        return list(loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded)
    return list(datasets.load_dataset(path, split=split))


def check(rows: list[dict], source, max_chars: int) -> tuple[list[dict], list[dict]]:
    """(valid rows in Tülu format, quarantine entries with source, row number and reason)."""
    valid, quarantine = [], []
    for number, raw in enumerate(rows, 1):
        if "__unparsable__" in raw:
            quarantine.append({"source": source.name, "row": number, "reason": raw["__unparsable__"]})
            continue
        row = {source.columns.get(key, key): value for key, value in raw.items()}
        found = problems(row, source.kind)
        if not found and len(json.dumps(row, ensure_ascii=False)) > max_chars:
            found = [f"longer than {max_chars} characters"]
        if found:
            quarantine.append({"source": source.name, "row": number, "reason": "; ".join(found)})
        else:
            valid.append(row)
    return valid, quarantine


def take(rows: list[dict], source, seed: int) -> list[dict]:
    """The recipe's share of a source: `rows` exactly, or round(`fraction` x valid rows); seeded."""
    count = source.rows if source.rows is not None else round(source.fraction * len(rows))
    if count > len(rows):
        raise SourceError(f"source {source.name}: asked for {count} rows, only {len(rows)} valid")
    rng = random.Random(f"{seed}:{source.name}")
    return [rows[i] for i in sorted(rng.sample(range(len(rows)), count))]


def mix(sources, seed: int, max_quarantine_fraction: float, max_chars: int) -> tuple[dict, list[dict], dict]:
    """(rows per Tülu kind, quarantine, counts per source)."""
    mixed: dict[str, list[dict]] = {"sft": [], "preference": [], "rlvr": []}
    quarantine, counts = [], {}
    for source in sources:
        raw = read_source(source.path, source.split)
        valid, bad = check(raw, source, max_chars)
        quarantine += bad
        share = len(bad) / max(1, len(raw))
        if share > max_quarantine_fraction:
            first = "; ".join(f"row {q['row']}: {q['reason']}" for q in bad[:3])
            raise SourceError(f"source {source.name} ({source.path}): {len(bad)} of {len(raw)} rows invalid "
                              f"({share:.1%} > recipe.data.max_quarantine_fraction {max_quarantine_fraction:.1%}); "
                              f"first: {first}")
        taken = [row | {"source": source.name} for row in take(valid, source, seed)]
        mixed[source.kind] += taken
        counts[source.name] = {"read": len(raw), "valid": len(valid), "quarantined": len(bad), "taken": len(taken)}
    return mixed, quarantine, counts
