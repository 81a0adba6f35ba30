"""The run's report as markdown (report.md, the terminal, the KFP UI), the RLVR progress page and the data
stage's markdown. The rows come from reporting.rows, the page from reporting.html, charts from reporting.plots."""
from __future__ import annotations

from html import escape

from posttrain.reporting import plots, rows
from posttrain.reporting.html import render_html  # noqa: F401  (the page lives there; callers import it from here)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(found: rows.Table) -> list[str]:
    """A rows.Table as markdown table lines."""
    return (["| " + " | ".join(found.headers) + " |", "|" + "---|" * len(found.headers)]
            + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in found.rows])


def render_markdown(report: dict) -> str:
    lines = [f"# posttrain report: {report['recipe']}", "",
             f"Candidate: **{report['candidate']}**, recipe sha256 `{report['recipe_sha256'][:12]}`", "",
             "## Scores", "", *table(rows.score_table(report)), "", rows.scores_note(report)]
    if report.get("sandbox"):
        lines += ["", f"Model-written code (HumanEval, code rows) ran in: **{report['sandbox']}**"]
    if baselines := rows.baselines_line(report):
        lines += ["", "## Gaps to baselines", "", rows.GAPS_NOTE + " Baselines: "
                  + ", ".join(f"**{label}** (`{model}`)" for label, model in baselines), "",
                  *table(rows.gap_table(report))]
    lines += ["", f"## {rows.gate_heading(report)}", ""]
    lines += [f"- {'pass' if passed else 'FAIL'}: {detail}" for passed, detail in rows.gate_checks(report)]
    if report.get("stages"):
        lines += ["", "## Stages", "", *table(rows.stage_table(report))]
    return "\n".join(lines) + "\n"


PROGRESS = {"reward": "reward (mean)", "accuracy": "accuracy (share verified right)", "kl": "KL to the reference",
            "completions/mean_length": "completion length (tokens)"}


def render_progress(summary: dict) -> str:
    """The RLVR stage's training curves (reward, accuracy, KL, length per logged step) as an HTML page."""
    log = summary.get("log", [])
    charts = [plots.curve(f"{summary['algorithm']}: {label}", [(e["step"], e[key]) for e in log if e.get(key) is not None])
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
