"""Decontamination: drop training rows that overlap an evaluation item, with a report of what matched.

Text is normalised (Unicode NFKC, lower case, whitespace collapsed) two ways, and an item matches under
either: punctuation deleted where it stands ("1,000" = "1000", "don't" = "dont", for copies with punctuation
stripped) and punctuation as a word break ("2+2" = "2 + 2"). Each is cut into word n-grams
(default 8, as Tülu 3). An inverted index maps each eval n-gram to the items holding it, so a training row
costs one hash lookup per n-gram however many eval items there are. A row is contaminated when, for some
eval item, it covers more than `threshold` of that item's n-grams; items shorter than n count as one
n-gram (the whole item), which makes verbatim short items an exact match.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field

_PUNCTUATION = re.compile(r"[^\w\s]")
_WORD = re.compile(r"\w+")


def normalisations(text: str) -> tuple[list[str], list[str]]:
    """(words with punctuation deleted, words split at punctuation)."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _PUNCTUATION.sub("", text).split(), _WORD.findall(text)


def normalise(text: str) -> list[str]:
    """Words split at punctuation, lower case (what near-duplicate dedup compares)."""
    return _WORD.findall(text.lower())


def ngrams(words: list[str], n: int) -> set[int]:
    if len(words) < n:
        return {hash(tuple(words))} if words else set()
    return {hash(tuple(words[i : i + n])) for i in range(len(words) - n + 1)}


@dataclass
class EvalIndex:
    """Every eval item's n-grams, indexed by n-gram."""

    n: int = 8
    names: list[str] = field(default_factory=list)  # "<eval set>/<item index>"
    sizes: list[int] = field(default_factory=list)  # n-grams per item
    postings: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    short_lengths: set[int] = field(default_factory=set)  # word counts of items shorter than n

    def add(self, eval_set: str, texts: list[str]) -> None:
        for i, text in enumerate(texts):
            variants = normalisations(text)
            for words in variants[: 2 if variants[0] != variants[1] else 1]:  # each is an item of the same name
                grams = ngrams(words, self.n)
                if not grams:
                    continue
                if len(words) < self.n:
                    self.short_lengths.add(len(words))
                item = len(self.names)
                self.names.append(f"{eval_set}/{i}")
                self.sizes.append(len(grams))
                for gram in grams:
                    self.postings[gram].append(item)

    def match(self, text: str, threshold: float) -> tuple[str, float] | None:
        """The eval item `text` covers most, when that coverage passes `threshold`."""
        hits: Counter[int] = Counter()
        postings = self.postings
        grams: set[int] = set()
        for words in normalisations(text):
            grams |= ngrams(words, self.n)
            for k in self.short_lengths:  # a short item is one k-gram: look for it anywhere in the row
                grams |= {hash(tuple(words[i : i + k])) for i in range(len(words) - k + 1)}
        for gram in grams:
            items = postings.get(gram)
            if items:
                hits.update(items)
        if not hits:
            return None
        item, count = max(hits.items(), key=lambda kv: kv[1] / self.sizes[kv[0]])
        coverage = count / self.sizes[item]
        return (self.names[item], coverage) if coverage > threshold else None


def row_text(row: dict) -> str:
    """The text of a Tülu row that could leak an eval item: every message, or the preference prompt."""
    messages = row.get("messages") or row.get("chosen") or []
    return "\n".join(m.get("content", "") for m in messages) or row.get("prompt", "")


def decontaminate(rows: list[dict], index: EvalIndex, threshold: float = 0.5, examples: int = 3):
    """(kept rows, report): rows scanned/removed, eval items hit, a few examples per eval set."""
    kept, removed, hit_items = [], Counter(), defaultdict(set)
    samples: dict[str, list] = defaultdict(list)
    for number, row in enumerate(rows):
        found = index.match(row_text(row), threshold)
        if found is None:
            kept.append(row)
            continue
        item, coverage = found
        eval_set = item.split("/", 1)[0]
        removed[eval_set] += 1
        hit_items[eval_set].add(item)
        if len(samples[eval_set]) < examples:
            samples[eval_set].append({"row": number, "eval_item": item, "coverage": round(coverage, 3),
                                      "text": row_text(row)[:200]})
    report = {"rows_scanned": len(rows), "rows_removed": sum(removed.values()),
              "by_eval_set": {name: {"rows_removed": removed[name], "eval_items_hit": len(hit_items[name]),
                                     "examples": samples[name]} for name in sorted(removed)}}
    return kept, report


def eval_text(row: dict) -> str:
    """A benchmark item's own text (GSM8K question, MATH problem, MMLU question), not our prompt around it:
    the words we add would dilute coverage, so a short question planted in training data would slip through."""
    return row.get("question") or row.get("problem") or row["messages"][-1]["content"]


def eval_index(recipe, splits: dict[str, list[dict]]) -> EvalIndex:
    """Every eval set `data.decontamination.eval_sets` names, indexed (the held-out sets from `splits`)."""
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


def decontaminate_splits(splits: dict[str, list[dict]], index: EvalIndex, cfg) -> dict:
    """Filter every training split against `index` in place (`cfg`: `recipe.data.decontamination`); the report
    per training split."""
    report = {}
    for name in ("sft", "preference", "rlvr", "preference_pairs"):
        splits[name], report[name] = decontaminate(splits[name], index, cfg.threshold)
        share = report[name]["rows_removed"] / max(1, report[name]["rows_scanned"])
        if cfg.action == "fail" and share > cfg.fail_above:
            raise ValueError(f"data: {name} is contaminated: {report[name]['rows_removed']} of "
                             f"{report[name]['rows_scanned']} rows overlap eval sets {sorted(report[name]['by_eval_set'])} "
                             f"(recipe.data.decontamination.fail_above = {cfg.fail_above})")
    return report
