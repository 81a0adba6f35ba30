"""The report as rows: what report.md (markdown.py) and report.html (html.py) both show, computed once here.

Each function reads a run's report (promote.decide writes it) and returns a `Table` of text cells, or the
short texts around them; the two renderers only lay these out, each in its own markup.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: list[tuple[str, ...]]  # text cells, already formatted; the renderer escapes them


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _interval(score: float, ci95: list[float]) -> str:
    return f"{_pct(score)} [{_pct(ci95[0])}, {_pct(ci95[1])}]"


def item_count(report: dict, name: str, n: int) -> str:
    """A benchmark's n in the score table: "40 of 164" when `eval.limit` scored a subset."""
    limited = report.get("limited", {}).get(name)
    return f"{n} of {limited['of']}" if limited else str(n)


def decoding(report: dict) -> str:
    """How the scored completions were drawn, as the eval stage recorded it per benchmark: "greedy" when every
    benchmark was; else each benchmark's own (e.g. "humaneval: 10 samples at temperature 0.8, pass@1")."""
    models = report["models"]
    ways = {name: by_model[models[0]].get("decoding", "greedy") for name, by_model in report["benchmarks"].items()}
    if set(ways.values()) <= {"greedy"}:
        return "greedy"
    return "; ".join(f"{name}: {way}" for name, way in ways.items())


def scores_note(report: dict) -> str:
    """The line under the score table's heading."""
    return f"Held-out, {decoding(report)}; 95% bootstrap interval."


def score_table(report: dict) -> Table:
    """Per benchmark one row (its n, each model's score with its interval), then per language a row when a
    benchmark has more than one language."""
    models = report["models"]
    rows = []
    for name, by_model in report["benchmarks"].items():
        first = by_model[models[0]]
        rows.append((name, item_count(report, name, first["n"]),
                     *(_interval(by_model[m]["score"], by_model[m]["ci95"]) for m in models)))
        languages = sorted({lang for m in models for lang in by_model[m].get("languages", {})})
        for lang in languages if len(languages) > 1 else []:
            rows.append((f"{name} · {lang}", str(first.get("languages", {}).get(lang, {}).get("n", 0)),
                         *(_pct(by_model[m].get("languages", {}).get(lang, {}).get("score", 0)) for m in models)))
    return Table(("benchmark", "n", *models), rows)


def gate_checks(report: dict) -> list[tuple[bool, str]]:
    """(passed, detail) of each check the gate made."""
    return [(c["passed"], c["detail"]) for c in report["gate"]["checks"]]


def gate_heading(report: dict) -> str:
    return f"Gate: {'PASS' if report['gate']['passed'] else 'REFUSED'}"


def baselines_line(report: dict) -> list[tuple[str, str]]:
    """(label, Hub name or path) of each baseline the eval stage scored beside the run's models."""
    return list(report.get("baselines", {}).items())


GAPS_NOTE = "Scored by the same harness on the same items; paired bootstrap 95% interval."


def gap_table(report: dict) -> Table:
    """Each model's gap to its baseline on the same items, with the paired bootstrap interval."""
    return Table(("benchmark", "model", "baseline", "gap", "95% interval"),
                 [(name, g["model"], g["baseline"], f"{g['gap']:+.1%}", f"[{g['ci95'][0]:+.1%}, {g['ci95'][1]:+.1%}]")
                  for name, found in report.get("gaps", {}).items() for g in found])


def key_numbers(summary: dict) -> str:
    """A stage summary in one short line (the terminal's stage table, the reports')."""
    shown, figures = [], ("trainable_parameters", "parameters", "peak_memory_mb", "peak_memory_of")
    if "trainable_parameters" in summary:  # first, before the cut: what an adapter saves against full weights
        shown.append(f"trainable={summary['trainable_parameters']:,}/{summary['parameters']:,} "
                     f"peak={summary['peak_memory_mb']:.0f}MB")
    for key, value in summary.items():
        if key in figures:
            continue
        if isinstance(value, float):
            shown.append(f"{key}={value:.3f}")
        elif isinstance(value, (int, str)):  # bools are ints: passed=True shows too
            shown.append(f"{key}={value}")
        elif key == "rows":
            shown.append("rows=" + "/".join(f"{k}:{v}" for k, v in value.items()))
    return ", ".join(shown)[:90]


def stage_table(report: dict) -> Table:
    """Each stage that ran: its seconds, its key numbers, its log (a path; the page links it)."""
    return Table(("stage", "seconds", "key numbers", "log"),
                 [(s["stage"], "" if s["seconds"] is None else f"{s['seconds']:.0f}",
                   key_numbers(s.get("summary", {})), s.get("log") or "") for s in report.get("stages", [])])


def data_numbers(report: dict) -> list[tuple[str, str]]:
    """(value, what it counts) of the data stage's key numbers."""
    data = report.get("data_report")
    if not data:
        return []
    duplicates = data.get("duplicates", {})
    return [(f"{n:,}", f"{split} rows") for split, n in data.get("rows", {}).items()] + [
        (f"{duplicates.get('exact', 0):,} + {duplicates.get('near', 0):,}", "exact + near duplicates dropped"),
        (f"{data.get('quarantined', 0):,}", "rows quarantined"),
        (f"{sum(data.get('decontaminated', {}).values()):,}", "rows removed by decontamination")]


def readable(text: str) -> str:
    """A model's answer as shown: characters that are not text (bytes that were not UTF-8, kept as lone
    surrogates by `surrogateescape`; control characters; unassigned or private code points; U+FFFD, what a
    decoder puts for bytes it could not read) become escapes such as `\\x9f`, so a reader sees which bytes
    the model wrote instead of rows of boxes. Newlines and tabs stay."""
    shown = []
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for the byte code - 0xDC00
            shown.append(f"\\x{code - 0xDC00:02x}")
        elif char in "\n\t" or (unicodedata.category(char) not in ("Cc", "Cs", "Co", "Cn") and code != 0xFFFD):
            shown.append(char)
        elif code <= 0xFF:
            shown.append(f"\\x{code:02x}")
        else:
            shown.append(f"\\u{code:04x}")
    return "".join(shown)


@dataclass(frozen=True)
class Answer:
    model: str
    correct: bool
    text: str  # readable(), stripped; "" for an empty answer


def examples(report: dict) -> dict[str, list[tuple[str, list[Answer]]]]:
    """Per benchmark, the held-out prompts the eval stage kept, each with every model's answer, in model order."""
    models, found = report["models"], {}
    for name, by_model in report["benchmarks"].items():
        count = min((len(by_model[m].get("samples", [])) for m in models), default=0)
        items = [(readable(by_model[models[0]]["samples"][i]["prompt"]),
                  [Answer(m, s["correct"], readable(s["completion"].strip()))
                   for m in models for s in [by_model[m]["samples"][i]]]) for i in range(count)]
        if items:
            found[name] = items
    return found
