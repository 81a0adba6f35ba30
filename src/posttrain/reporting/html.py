"""The report page people open first (report.html, and the gate's HTML artifact in the KFP UI).

Top to bottom: the gate's verdict and reasons; the score progression across stages with 95% intervals; the
score table; the training curves of each training stage; held-out prompts with every model's answer side by
side, right or wrong; the data's key numbers; the stages with their times and logs. Self-contained: inline
SVG and CSS, no script, nothing fetched. Sections whose inputs a report lacks (the gate's artifact has no
stage summaries) are left out.
"""
from __future__ import annotations

from html import escape

from posttrain.reporting import plots, rows

# Per training stage: (key in its summary's step log, panel title), in the order shown.
CURVES = {
    "sft": (("loss", "loss"), ("learning_rate", "learning rate"), ("grad_norm", "gradient norm")),
    "dpo": (("loss", "loss"), ("learning_rate", "learning rate"), ("rewards/margins", "reward margin"),
            ("rewards/accuracies", "reward accuracy")),
    "rlvr": (("reward", "reward"), ("accuracy", "verified share"), ("kl", "KL to reference"),
             ("completions/mean_length", "completion length (tokens)"), ("learning_rate", "learning rate"),
             ("loss", "loss")),
}
STYLE = """
body{font-family:system-ui,sans-serif;max-width:1060px;margin:1.5em auto;padding:0 1em;color:#222}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
.meta{color:#666;margin-top:0}.verdict{padding:.8em 1em;border-radius:6px;margin:1em 0}
.pass{background:#e8f5e9;border:1px solid #66bb6a}.refused{background:#fdecea;border:1px solid #e57373}
.verdict h2{border:0;margin:0 0 .3em 0;font-size:1.3em}.verdict ul{margin:.2em 0;padding-left:1.3em}
.ok{color:#2e7d32}.bad{color:#c62828;font-weight:600}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:right;font-size:.92em}th{background:#f5f5f5}
td:first-child,th:first-child{text-align:left}.charts{display:flex;flex-wrap:wrap;gap:8px}
.curves h3,.examples h3{font-size:1em;margin:.8em 0 .3em}.example{border:1px solid #ddd;border-radius:6px;
margin:.6em 0;padding:.5em .7em}.prompt{white-space:pre-wrap;font-size:.88em;color:#444;margin-bottom:.4em}
.answers{display:grid;gap:6px}.answer{border-radius:4px;padding:.3em .5em;font-size:.85em;white-space:pre-wrap;
overflow-wrap:anywhere;max-height:14em;overflow:hidden}.answer.right{background:#e8f5e9}.answer.wrong{background:#fdecea}
.answer b{display:block;font-size:.9em;margin-bottom:.2em}.numbers{display:flex;flex-wrap:wrap;gap:10px}
.number{border:1px solid #ddd;border-radius:6px;padding:.4em .8em;min-width:110px}
.number b{display:block;font-size:1.25em}.number span{color:#666;font-size:.85em}
"""


def table(found: rows.Table, css_class: str, left: tuple[str, ...] = (), links: tuple[str, ...] = ()) -> str:
    """A rows.Table as an HTML table: columns named in `left` align left (text), the rest right (numbers);
    cells of the columns named in `links` link to their own text (a path)."""
    def cell(header: str, text: str) -> str:
        shown = f'<a href="{escape(text)}">{escape(text)}</a>' if header in links and text else escape(text)
        return f'<td style="text-align:left">{shown}</td>' if header in left else f"<td>{shown}</td>"

    head = "".join(f"<th>{escape(h)}</th>" for h in found.headers)
    body = "".join("<tr>" + "".join(cell(h, c) for h, c in zip(found.headers, row)) + "</tr>" for row in found.rows)
    return f'<table class="{css_class}"><tr>{head}</tr>{body}</table>'


def verdict(report: dict) -> str:
    passed = report["gate"]["passed"]
    items = "".join(f'<li class="{"ok" if ok else "bad"}">{"✓" if ok else "✗"} {escape(detail)}</li>'
                    for ok, detail in rows.gate_checks(report))
    return (f'<div id="gate" class="verdict {"pass" if passed else "refused"}">'
            f'<h2>{rows.gate_heading(report)}</h2>'
            f'<div>{"Candidate promoted" if passed else "Nothing promoted"}: '
            f'<b>{escape(report["candidate"])}</b></div><ul>{items}</ul></div>')


def progression(report: dict) -> str:
    models = report["models"]
    series = {name: [(by[m]["score"], *by[m]["ci95"]) for m in models] for name, by in report["benchmarks"].items()}
    return (f'<h2>Scores across stages</h2><p class="meta">{escape(rows.scores_note(report))} Whiskers: that '
            f'interval.</p>' + plots.progression("held-out score by stage", models, series))


def score_table(report: dict) -> str:
    return table(rows.score_table(report), "scores")


def curves(report: dict) -> str:
    panels = []
    for stage in report.get("stages", []):
        log = stage.get("summary", {}).get("log") or []
        charts = []
        for i, (key, title) in enumerate(CURVES.get(stage["stage"], ())):
            points = [(e["step"], e[key]) for e in log if isinstance(e.get(key), (int, float))]
            if len(points) >= 2:
                charts.append(plots.curve(title, points, plots.PALETTE[i % len(plots.PALETTE)]))
        if charts:
            panels.append(f'<section class="curves" data-stage="{escape(stage["stage"])}">'
                          f'<h3>{escape(stage["stage"])}</h3><div class="charts">{"".join(charts)}</div></section>')
    return "<h2>Training curves</h2>" + "".join(panels) if panels else ""


def examples(report: dict) -> str:
    """The same held-out prompts answered by every model (the eval stage keeps a few per benchmark)."""
    sections = []
    for name, items in rows.examples(report).items():
        shown = []
        for prompt, answers in items:
            cells = "".join(f'<div class="answer {"right" if a.correct else "wrong"}"><b>{escape(a.model)} '
                            f'{"✓ right" if a.correct else "✗ wrong"}</b>'
                            + (escape(a.text) or "<i>(empty answer)</i>") + "</div>" for a in answers)
            shown.append(f'<div class="example"><div class="prompt">{escape(prompt)}</div><div class="answers" '
                         f'style="grid-template-columns:repeat({len(answers)},1fr)">{cells}</div></div>')
        sections.append(f'<section class="examples" data-benchmark="{escape(name)}"><h3>{escape(name)}</h3>'
                        + "".join(shown) + "</section>")
    return "<h2>Held-out examples, side by side</h2>" + "".join(sections) if sections else ""


def data_numbers(report: dict) -> str:
    boxes = rows.data_numbers(report)
    if not boxes:
        return ""
    return ('<h2>Data</h2><div class="numbers">' + "".join(f'<div class="number"><b>{escape(v)}</b>'
                                                            f'<span>{escape(k)}</span></div>' for v, k in boxes)
            + "</div>")


def stage_table(report: dict) -> str:
    """The stages with their times, key numbers and a link to each log."""
    found = rows.stage_table(report)
    return "<h2>Stages</h2>" + table(found, "stages", left=("key numbers",), links=("log",)) if found.rows else ""


def sandbox(report: dict) -> str:
    if not report.get("sandbox"):
        return ""
    return (f'<p id="sandbox" class="meta">Model-written code (HumanEval, code rows) ran in: '
            f'<b>{escape(report["sandbox"])}</b></p>')


def gap_table(report: dict) -> str:
    """Each stage's gap to its baseline on the same items, with the paired bootstrap interval."""
    if not (baselines := rows.baselines_line(report)):
        return ""
    return (f'<h2 id="gaps">Gaps to baselines</h2><p class="meta">{rows.GAPS_NOTE} Baselines: '
            + ", ".join(f"<b>{escape(label)}</b> (<code>{escape(model)}</code>)" for label, model in baselines)
            + "</p>" + table(rows.gap_table(report), "gaps"))


def render_html(report: dict) -> str:
    """The whole page."""
    body = [f"<h1>posttrain report: {escape(report['recipe'])}</h1>",
            f'<p class="meta">candidate <b>{escape(report["candidate"])}</b> · recipe sha256 '
            f'<code>{report["recipe_sha256"][:12]}</code></p>',
            verdict(report), sandbox(report), progression(report), score_table(report), gap_table(report),
            curves(report), examples(report), data_numbers(report), stage_table(report)]
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>posttrain report: {escape(report["recipe"])}'
            f"</title><style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")
