"""The HTML report, opened in headless Chromium: tables and plots are on the page (skipped without Chromium)."""
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")
def test_report_html_renders_tables_and_plots_in_chromium(tmp_path):
    from test_promote import _stage_dirs

    _, report_dir = _stage_dirs(tmp_path, 0.7)
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_report_html.py"),
                             str(report_dir / "report.html")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "plots with 2 bars" in result.stdout and (report_dir / "report.png").stat().st_size > 10_000
