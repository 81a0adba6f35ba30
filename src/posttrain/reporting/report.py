"""Human-readable renderings of a run's report: markdown and a self-contained HTML page (KFP UI or browser)."""
from __future__ import annotations

from html import escape

from posttrain.reporting.html import gap_rows, item_count, render_html  # noqa: F401  (the page lives there; callers import it from here)


def render_markdown(report: dict) -> str:
    models = report["models"]
    lines = [f"# posttrain report: {report['recipe']}", "",
             f"Candidate: **{report['candidate']}**, recipe sha256 `{report['recipe_sha256'][:12]}`", "",
             "## Scores (held-out, greedy; 95% bootstrap interval)", "",
             "| benchmark | n | " + " | ".join(models) + " |",
             "|---|---|" + "---|" * len(models)]
    for name, by_model in report["benchmarks"].items():
        n = item_count(report, name, by_model[models[0]]["n"])
        cells = [f"{by_model[m]['score']:.1%} [{by_model[m]['ci95'][0]:.1%}, {by_model[m]['ci95'][1]:.1%}]"
                 for m in models]
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    if report.get("sandbox"):
        lines += ["", f"Model-written code (HumanEval, code rows) ran in: **{report['sandbox']}**"]
    lines += _gap_lines(report)
    gate = report["gate"]
    lines += ["", f"## Gate: {'PASS' if gate['passed'] else 'REFUSED'}", ""]
    lines += [f"- {'pass' if c['passed'] else 'FAIL'}: {c['detail']}" for c in gate["checks"]]
    if report.get("stages"):
        lines += ["", "## Stages", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {s['stage']} | {s['seconds'] or ''} |" for s in report["stages"]]
    return "\n".join(lines) + "\n"


def _gap_lines(report: dict) -> list[str]:
    if not report.get("baselines"):
        return []
    lines = ["", "## Gaps to baselines (same items, same harness; paired bootstrap 95% interval)", "",
             "Baselines: " + ", ".join(f"**{label}** (`{model}`)" for label, model in report["baselines"].items()), "",
             "| benchmark | model | baseline | gap | 95% interval |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {model} | {baseline} | {gap:+.1%} | [{low:+.1%}, {high:+.1%}] |"
              for name, model, baseline, gap, low, high in gap_rows(report)]
    return lines


def _line(title: str, points: list[tuple[float, float]]) -> str:
    """An inline SVG line chart of (step, value) points, axes labelled with their ranges."""
    width, height, left, top = 560, 160, 56, 30
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    scaled = [(left + (x - x0) / (x1 - x0) * (width - left - 10), top + (1 - (y - y0) / (y1 - y0)) * height)
              for x, y in points]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in scaled)
    return (f'<svg role="img" aria-label="{escape(title)}" width="{width}" height="{height + top + 30}" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
            f'<text x="0" y="16" font-size="14">{escape(title)}</text>'
            f'<polyline class="series" fill="none" stroke="#4477aa" stroke-width="2" points="{path}"/>'
            f'<text x="{left - 4}" y="{top + 4}" font-size="11" text-anchor="end">{y1:.3g}</text>'
            f'<text x="{left - 4}" y="{top + height}" font-size="11" text-anchor="end">{y0:.3g}</text>'
            f'<text x="{left}" y="{top + height + 18}" font-size="11">step {x0:g}</text>'
            f'<text x="{width - 10}" y="{top + height + 18}" font-size="11" text-anchor="end">step {x1:g}</text></svg>')


PROGRESS = {"reward": "reward (mean)", "accuracy": "accuracy (share verified right)", "kl": "KL to the reference",
            "completions/mean_length": "completion length (tokens)"}


def render_progress(summary: dict) -> str:
    """The RLVR stage's training curves (reward, accuracy, KL, length per logged step) as an HTML page."""
    log = summary.get("log", [])
    charts = [_line(f"{summary['algorithm']}: {label}", [(e["step"], e[key]) for e in log if e.get(key) is not None])
              for key, label in PROGRESS.items() if sum(1 for e in log if e.get(key) is not None) >= 2]
    head = (f"<h1>rlvr: {escape(summary['algorithm'])}, {summary['steps']} steps</h1><p>reward "
            f"{summary['reward_first']} &rarr; {summary['reward_last']}</p>")
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>rlvr progress</title></head>"
            f"<body style=\"font-family:sans-serif\">{head}{''.join(charts) or '<p>no steps logged</p>'}</body></html>\n")


def render_data_markdown(report: dict) -> str:
    """The data stage's report as markdown (the KFP UI renders it): rows, languages and families per split,
    synthesis and verification counts, duplicates, sources and quarantine, decontamination."""
    splits = list(report["rows"])
    languages = sorted({lang for split in splits for lang in report["languages"].get(split, {})})
    lines = ["# Data", "", "| split | rows | " + " | ".join(languages) + " | families |",
             "|---|---|" + "---|" * len(languages) + "---|"]
    for split in splits:
        by_language = report["languages"].get(split, {})
        families = ", ".join(f"{k} {v}" for k, v in report.get("families", {}).get(split, {}).items())
        lines.append(f"| {split} | {report['rows'][split]} | " + " | ".join(str(by_language.get(lang, 0))
                                                                          for lang in languages) + f" | {families} |")
    synthesis = report.get("synthesis", {})
    if synthesis:
        lines += ["", f"## Synthesis ({synthesis.get('backend', '?')} backend)", "",
                  "| family | generated | failed its verifier |", "|---|---|---|"]
        failed = synthesis.get("failed_verification", {})
        for family, count in synthesis.get("generated", {}).items():
            lines.append(f"| {family} | {count} | {failed.get(family, 0)} |")
        augmented = synthesis.get("augmented", {})
        if augmented:
            lines.append("")
            lines.append("Augmented: " + ", ".join(f"{k} {v}" for k, v in augmented.items())
                         + f"; failed verification {failed.get('augmented', 0)}.")
    duplicates = report.get("duplicates_dropped", {})
    lines += ["", "## Duplicates dropped", "",
              f"{duplicates.get('exact', 0)} exact and {duplicates.get('near', 0)} near duplicates (MinHash).", ""]
    lines += [f"- {group}: {count}" for group, count in duplicates.get("by_group", {}).items()]
    if report.get("sources"):
        lines += ["", "## Sources", "", "| source | read | valid | quarantined | taken | duplicates |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {name} | {c['read']} | {c['valid']} | {c['quarantined']} | {c['taken']} | "
                  f"{c.get('duplicates', 0)} |" for name, c in report["sources"].items()]
    lines += ["", f"Quarantined rows: {report.get('quarantined', 0)} (see quarantine.jsonl).", "",
              "## Decontamination", "", "| training split | eval set | rows scanned | rows removed | eval items hit |",
              "|---|---|---|---|---|"]
    for split, found in report.get("decontamination", {}).items():
        for eval_set, hit in found.get("by_eval_set", {}).items() or {"(none)": {}}.items():
            lines.append(f"| {split} | {eval_set} | {found['rows_scanned']} | {hit.get('rows_removed', 0)} | "
                         f"{hit.get('eval_items_hit', 0)} |")
        for example in [e for hit in found.get("by_eval_set", {}).values() for e in hit.get("examples", [])][:2]:
            text = " ".join(example["text"].split())[:160]
            lines.append(f"|  | example | row {example['row']} ~ {example['eval_item']} | coverage {example['coverage']} | "
                         f"{text} |")
    return "\n".join(lines) + "\n"
