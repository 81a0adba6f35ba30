"""`eval.baselines`: a second model scored by the same harness beside the run's models; the report shows its
scores and each stage's gap to it, with paired intervals (kfp.local, micro settings: conftest.py's
`refused_run_with_a_baseline`, whose gate refuses: the baseline's columns do not depend on the verdict)."""
import subprocess
import sys

import pytest

from conftest import ROOT
from conftest import IN_CI
from test_report_html import CHROMIUM

pytestmark = pytest.mark.e2e


def test_local_run_reports_a_baselines_scores_and_each_gap(refused_run_with_a_baseline):
    report, run = refused_run_with_a_baseline.report, refused_run_with_a_baseline.run
    second_tiny_model = refused_run_with_a_baseline.baseline

    assert report["models"] == ["base", "sft", "dpo", "rlvr", "tiny-baseline"] and report["candidate"] == "rlvr"
    assert report["baselines"] == {"tiny-baseline": str(second_tiny_model)}
    for name, by_model in report["benchmarks"].items():
        assert by_model["tiny-baseline"]["n"] == by_model["rlvr"]["n"]
        [gap] = report["gaps"][name]
        assert (gap["model"], gap["baseline"]) == ("rlvr", "tiny-baseline")
        assert gap["gap"] == pytest.approx(by_model["rlvr"]["score"] - by_model["tiny-baseline"]["score"])
        assert gap["ci95"][0] <= gap["gap"] <= gap["ci95"][1]
    markdown = (run / "report.md").read_text()
    assert "| tiny-baseline |" in markdown.splitlines()[6] + " |"  # a column of the score table
    assert "## Gaps to baselines" in markdown and "| arithmetic | rlvr | tiny-baseline |" in markdown
    html = (run / "report.html").read_text()
    assert "<th>tiny-baseline</th>" in html and '<table class="gaps">' in html
    if CHROMIUM or IN_CI:  # the page as a browser renders it (CI installs Chromium: no silent pass there)
        assert CHROMIUM, "no Chromium in CI: .ci/run installs it"
        result = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_report_html.py"),
                                 str(run / "report.html")], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "Gaps to baselines" in result.stdout
        dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                              (run / "report.html").as_uri()], capture_output=True, text=True,
                             timeout=60).stdout
        assert "<th>tiny-baseline</th>" in dom and 'class="gaps"' in dom
