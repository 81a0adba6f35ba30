"""Human-readable renderings of a run's report (markdown; the same file opens in the KFP UI)."""
from __future__ import annotations


def render_markdown(report: dict) -> str:
    models = report["models"]
    lines = [f"# posttrain report: {report['recipe']}", "",
             f"Candidate: **{report['candidate']}**, recipe sha256 `{report['recipe_sha256'][:12]}`", "",
             "## Scores (held-out, greedy; 95% bootstrap interval)", "",
             "| benchmark | n | " + " | ".join(models) + " |",
             "|---|---|" + "---|" * len(models)]
    for name, by_model in report["benchmarks"].items():
        n = by_model[models[0]]["n"]
        cells = [f"{by_model[m]['score']:.1%} [{by_model[m]['ci95'][0]:.1%}, {by_model[m]['ci95'][1]:.1%}]"
                 for m in models]
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    gate = report["gate"]
    lines += ["", f"## Gate: {'PASS' if gate['passed'] else 'REFUSED'}", ""]
    lines += [f"- {'pass' if c['passed'] else 'FAIL'}: {c['detail']}" for c in gate["checks"]]
    return "\n".join(lines) + "\n"
