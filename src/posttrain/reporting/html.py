"""The report page people open first (report.html, and the gate's HTML artifact in the KFP UI).

Top to bottom: the gate's verdict and reasons; the score progression across stages with 95% intervals; the
score table; the training curves of each training stage; held-out prompts with every model's answer side by
side, right or wrong; the data's key numbers; the stages with their times and logs. Self-contained: inline
SVG and CSS, no script, nothing fetched. Sections whose inputs a report lacks (the gate's artifact has no
stage summaries) are left out.
"""
from __future__ import annotations

from html import escape

from posttrain.reporting import plots

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


def _pct(value: float) -> str:
    return f"{value:.1%}"


def verdict(report: dict) -> str:
    gate = report["gate"]
    passed = gate["passed"]
    items = "".join(f'<li class="{"ok" if c["passed"] else "bad"}">{"✓" if c["passed"] else "✗"} '
                    f'{escape(c["detail"])}</li>' for c in gate["checks"])
    return (f'<div id="gate" class="verdict {"pass" if passed else "refused"}">'
            f'<h2>Gate: {"PASS" if passed else "REFUSED"}</h2>'
            f'<div>{"Candidate promoted" if passed else "Nothing promoted"}: '
            f'<b>{escape(report["candidate"])}</b></div><ul>{items}</ul></div>')


def progression(report: dict) -> str:
    models = report["models"]
    series = {name: [(by[m]["score"], *by[m]["ci95"]) for m in models] for name, by in report["benchmarks"].items()}
    return ('<h2>Scores across stages</h2><p class="meta">Held-out, greedy; whiskers: 95% bootstrap interval.</p>'
            + plots.progression("held-out score by stage", models, series))


def score_columns(report: dict) -> list[tuple[str, str]]:
    """(key, heading) of the score table's model columns; a place to add columns (e.g. a baseline)."""
    return [(m, m) for m in report["models"]]


def item_count(report: dict, name: str, n: int) -> str | int:
    """A benchmark's n in the score tables: "40 of 164" when `eval.limit` scored a subset."""
    limited = report.get("limited", {}).get(name)
    return f"{n} of {limited['of']}" if limited else n


def score_table(report: dict) -> str:
    columns = score_columns(report)
    head = "".join(f"<th>{escape(h)}</th>" for _, h in columns)
    rows = []
    for name, by_model in report["benchmarks"].items():
        first = by_model[columns[0][0]]
        cells = "".join(f"<td>{_pct(by_model[k]['score'])} <small>[{_pct(by_model[k]['ci95'][0])}, "
                        f"{_pct(by_model[k]['ci95'][1])}]</small></td>" for k, _ in columns)
        rows.append(f"<tr><td>{escape(name)}</td><td>{item_count(report, name, first['n'])}</td>{cells}</tr>")
        languages = sorted({lang for k, _ in columns for lang in by_model[k].get("languages", {})})
        for lang in languages if len(languages) > 1 else []:
            n = first.get("languages", {}).get(lang, {}).get("n", 0)
            cells = "".join(f"<td>{_pct(by_model[k].get('languages', {}).get(lang, {}).get('score', 0))}</td>"
                            for k, _ in columns)
            rows.append(f"<tr><td>&nbsp;&nbsp;{escape(name)} · {escape(lang)}</td><td>{n}</td>{cells}</tr>")
    return (f'<table class="scores"><tr><th>benchmark</th><th>n</th>{head}</tr>{"".join(rows)}</table>')


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
    models, sections = report["models"], []
    for name, by_model in report["benchmarks"].items():
        count = min((len(by_model[m].get("samples", [])) for m in models), default=0)
        items = []
        for i in range(count):
            answers = "".join(
                f'<div class="answer {"right" if s["correct"] else "wrong"}"><b>{escape(m)} '
                f'{"✓ right" if s["correct"] else "✗ wrong"}</b>'
                + (escape(s["completion"].strip()) or "<i>(empty answer)</i>") + "</div>"
                for m in models for s in [by_model[m]["samples"][i]])
            prompt = by_model[models[0]]["samples"][i]["prompt"]
            items.append(f'<div class="example"><div class="prompt">{escape(prompt)}</div><div class="answers" '
                         f'style="grid-template-columns:repeat({len(models)},1fr)">{answers}</div></div>')
        if items:
            sections.append(f'<section class="examples" data-benchmark="{escape(name)}"><h3>{escape(name)}</h3>'
                            + "".join(items) + "</section>")
    return "<h2>Held-out examples, side by side</h2>" + "".join(sections) if sections else ""


def data_numbers(report: dict) -> str:
    data = report.get("data_report")
    if not data:
        return ""
    boxes = [(f"{n:,}", f"{split} rows") for split, n in data.get("rows", {}).items()]
    boxes += [(f"{data.get('duplicates', {}).get('exact', 0):,} + {data.get('duplicates', {}).get('near', 0):,}",
               "exact + near duplicates dropped"),
              (f"{data.get('quarantined', 0):,}", "rows quarantined"),
              (f"{sum(data.get('decontaminated', {}).values()):,}", "rows removed by decontamination")]
    return ('<h2>Data</h2><div class="numbers">' + "".join(f'<div class="number"><b>{escape(v)}</b>'
                                                            f'<span>{escape(k)}</span></div>' for v, k in boxes)
            + "</div>")


def stage_table(report: dict, key_numbers) -> str:
    stages = report.get("stages", [])
    if not stages:
        return ""
    rows = []
    for s in stages:
        seconds = "" if s["seconds"] is None else f"{s['seconds']:.0f}"
        log = f'<a href="{escape(s["log"])}">{escape(s["log"])}</a>' if s.get("log") else ""
        rows.append(f"<tr><td>{escape(s['stage'])}</td><td>{seconds}</td>"
                    f'<td style="text-align:left">{escape(key_numbers(s["summary"]))}</td><td>{log}</td></tr>')
    return (f'<h2>Stages</h2><table class="stages"><tr><th>stage</th><th>seconds</th><th>key numbers</th>'
            f"<th>log</th></tr>{''.join(rows)}</table>")


def key_numbers(summary: dict) -> str:
    """A stage summary in one short line (the terminal's stage table, the page's)."""
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


def sandbox(report: dict) -> str:
    if not report.get("sandbox"):
        return ""
    return (f'<p id="sandbox" class="meta">Model-written code (HumanEval, code rows) ran in: '
            f'<b>{escape(report["sandbox"])}</b></p>')


def gap_rows(report: dict) -> list[tuple[str, str, str, float, float, float]]:
    """(benchmark, model, baseline, gap, low, high) for each gap the eval stage measured."""
    return [(name, g["model"], g["baseline"], g["gap"], *g["ci95"]) for name, found in report.get("gaps", {}).items()
            for g in found]


def gap_table(report: dict) -> str:
    """Each stage's gap to its baseline on the same items, with the paired bootstrap interval."""
    if not report.get("baselines"):
        return ""
    return ('<h2 id="gaps">Gaps to baselines</h2><p class="meta">Scored by the same harness on the same items; '
            "paired bootstrap 95% interval. Baselines: " + ", ".join(
                f"<b>{escape(label)}</b> (<code>{escape(model)}</code>)" for label, model in report["baselines"].items())
            + '</p><table class="gaps"><tr><th>benchmark</th><th>model</th><th>baseline</th><th>gap</th>'
            "<th>95% interval</th></tr>" + "".join(
                f"<tr><td>{escape(name)}</td><td>{escape(model)}</td><td>{escape(baseline)}</td>"
                f"<td>{gap:+.1%}</td><td>[{low:+.1%}, {high:+.1%}]</td></tr>"
                for name, model, baseline, gap, low, high in gap_rows(report)) + "</table>")


def render_html(report: dict) -> str:
    """The whole page."""
    body = [f"<h1>posttrain report: {escape(report['recipe'])}</h1>",
            f'<p class="meta">candidate <b>{escape(report["candidate"])}</b> · recipe sha256 '
            f'<code>{report["recipe_sha256"][:12]}</code></p>',
            verdict(report), sandbox(report), progression(report), score_table(report), gap_table(report),
            curves(report), examples(report),
            data_numbers(report), stage_table(report, key_numbers)]
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>posttrain report: {escape(report["recipe"])}'
            f"</title><style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")
