"""Open a run's report.html in headless Chromium and check that its tables and plots are on the page.

    python scripts/check_report_html.py demo-run/report.html

Needs a Chromium binary (`apt-get install chromium`, or CHROMIUM=/path). Writes report.png beside the
report (a screenshot) and exits non-zero naming what is missing.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: dict[str, int] = {}
        self.bars = 0
        self.headings: list[str] = []
        self._in_heading = False

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self.bars += tag == "rect" and ("class", "bar") in attrs
        self._in_heading = tag in ("h1", "h2")

    def handle_data(self, data):
        if self._in_heading and data.strip():
            self.headings.append(data.strip())
            self._in_heading = False


def main(path: str) -> int:
    report = Path(path).resolve()
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("no chromium found: apt-get install chromium, or set CHROMIUM", file=sys.stderr)
        return 2
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu"]
    dom = subprocess.run(flags + ["--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=60).stdout
    subprocess.run(flags + [f"--screenshot={report.with_suffix('.png')}", "--window-size=1000,1400", report.as_uri()],
                   capture_output=True, timeout=60)
    page = Page()
    page.feed(dom)
    problems = []
    if page.tags.get("table", 0) < 1:
        problems.append("no score table")
    if page.tags.get("svg", 0) < 1 or page.bars < 2:
        problems.append(f"no bar plot (svg: {page.tags.get('svg', 0)}, bars: {page.bars})")
    if not any(h.startswith("Gate:") for h in page.headings):
        problems.append("no gate decision heading")
    if problems:
        print(f"{report}: " + "; ".join(problems), file=sys.stderr)
        return 1
    print(f"{report}: {page.tags['table']} tables, {page.tags['svg']} plots with {page.bars} bars, "
          f"headings {page.headings}; screenshot {report.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
