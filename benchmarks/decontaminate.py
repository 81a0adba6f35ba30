"""Decontamination speed: our inverted n-gram index against a naive scan, same rows, same eval sets.

    python benchmarks/decontaminate.py [--rows 200000]

Eval sets: the 164 HumanEval prompts and 1,000 synthetic held-out problems. Training rows: synthetic SFT
conversations. The naive baseline builds a Python set of n-grams per row and intersects it with every eval
item's set; it runs on a slice of the rows (it is slow) and its rows/s is scaled, which is what it measures.
Both must remove the same rows on that slice. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import time

from posttrain.data.arithmetic import problems
from posttrain.data.decontaminate import EvalIndex, decontaminate, ngrams, normalise, row_text
from posttrain.evals import humaneval


def naive(rows: list[dict], items: list[str], n: int, threshold: float) -> list[dict]:
    item_grams = [ngrams(normalise(text), n) for text in items]
    kept = []
    for row in rows:
        grams = ngrams(normalise(row_text(row)), n)
        if not any(g and len(grams & g) / len(g) > threshold for g in item_grams):
            kept.append(row)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--baseline-rows", type=int, default=5_000)
    args = parser.parse_args()
    heldout = [r["messages"][0]["content"] for r in problems(99, 1000, 3, ["add", "sub"], ["en", "de", "fr"])]
    items = [p["prompt"] for p in humaneval.problems()] + heldout
    rows = []
    for row in problems(1, args.rows, 3, ["add", "sub"], ["en", "de", "fr", "es", "it"]):
        rows.append({"messages": row["messages"] + [{"role": "assistant", "content": row["solution"]}]})
    rows[::1000] = [{"messages": [{"role": "user", "content": items[i % len(items)]}, {"role": "assistant",
                                                                                        "content": "x"}]}
                    for i in range(len(rows[::1000]))]  # planted contamination, one row in a thousand

    start = time.perf_counter()
    index = EvalIndex(n=8)
    index.add("humaneval", items[:164])
    index.add("heldout", items[164:])
    kept, report = decontaminate(rows, index, threshold=0.5)
    ours = len(rows) / (time.perf_counter() - start)

    sample = rows[: args.baseline_rows]
    start = time.perf_counter()
    naive_kept = naive(sample, items, 8, 0.5)
    baseline = len(sample) / (time.perf_counter() - start)
    assert naive_kept == decontaminate(sample, index, threshold=0.5)[0], "the two disagree on the sample"
    print(json.dumps({"benchmark": "decontaminate", "ours": round(ours), "baseline": round(baseline),
                      "unit": "rows/s", "ratio": round(ours / baseline, 1), "rows": len(rows),
                      "removed": report["rows_removed"], "eval_items": len(items)}))


if __name__ == "__main__":
    main()
