"""The report page, opened in headless Chromium (skipped without Chromium, except in CI, which installs it)."""
import random
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
from posttrain.reporting.report import render_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _report() -> dict:
    """A report shaped like a local run's: four models, samples kept by the eval stage, stage step logs."""
    rng = random.Random(0)

    def model(score: float, right: list[int]) -> dict:
        return {"score": score, "n": 16, "ci95": [max(0.0, score - 0.2), min(1.0, score + 0.2)],
                "languages": {"en": {"score": score, "n": 8}, "de": {"score": score / 2, "n": 8}},
                "samples": [{"prompt": "Mia has 123 apples and buys 456 more. How many does she have?",
                             "completion": "The answer is 579." if r else "The answer is 589.", "correct": bool(r)}
                            for r in right]}

    log = {"sft": [{"step": i, "loss": 3 / i + rng.random() * 0.1, "learning_rate": 3e-3, "grad_norm": 1.0 + i}
                   for i in range(1, 30)],
           "dpo": [{"step": i, "loss": 0.7 - i * 0.01, "learning_rate": 2e-4, "rewards/margins": i * 0.05}
                   for i in range(1, 20)],
           "rlvr": [{"step": i, "reward": 0.2 + rng.random() * 0.05, "kl": i * 0.001, "accuracy": 0.3,
                     "completions/mean_length": 80 - i, "learning_rate": 1e-4 * (1 - i / 60)} for i in range(1, 40)]}
    return {"recipe": "tiny", "recipe_sha256": "ab" * 32, "models": ["base", "sft", "dpo", "rlvr"], "candidate": "rlvr",
            "benchmarks": {"arithmetic": {"base": model(0.0, [0, 0]), "sft": model(0.38, [1, 0]),
                                          "dpo": model(0.4, [1, 0]), "rlvr": model(0.51, [1, 1])}},
            "gate": {"passed": False, "candidate": "rlvr", "reasons": ["arithmetic: rlvr scored 0.510, minimum 0.600"],
                     "checks": [{"check": "min", "passed": False, "detail": "arithmetic: rlvr scored 0.510, minimum 0.600"}]},
            "stages": [{"stage": "data", "seconds": 40.0, "summary": {"rows": {"sft": 100}}, "log": "logs/data.log"}]
            + [{"stage": s, "seconds": 60.0, "summary": {"log": entries}, "log": f"logs/{s}.log"}
               for s, entries in log.items()],
            "data_report": {"rows": {"sft": 100, "heldout": 16}, "duplicates": {"exact": 2, "near": 3},
                            "quarantined": 0, "decontaminated": {"sft": 4}}}


def _check(path):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "check_report_html.py"), str(path)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")
def test_report_page_shows_verdict_progression_curves_and_examples_in_chromium(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render_html(_report()))
    result = _check(page)
    assert result.returncode == 0, result.stderr
    assert "progression chart with 4 interval marks" in result.stdout  # one per model
    assert "curve panels ['sft', 'dpo', 'rlvr']" in result.stdout and "2 examples x 4 models" in result.stdout
    assert (tmp_path / "report.png").stat().st_size > 20_000


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")
def test_the_check_names_what_a_page_lacks(tmp_path):
    report = _report()
    report["stages"][1]["summary"]["log"] = []  # sft listed, but no curve to draw
    for by_model in report["benchmarks"].values():
        for result in by_model.values():
            result["samples"] = []
    page = tmp_path / "report.html"
    page.write_text(render_html(report))
    result = _check(page)
    assert result.returncode == 1
    assert "no training-curve panel for sft" in result.stderr and "no held-out examples" in result.stderr
