"""Open a run's report.html in headless Chromium and check what a reader should find on the page.

    python scripts/check_report_html.py demo-run/report.html

Checks, on the DOM as Chromium rendered it: the gate's verdict heading; the score progression chart with an
interval mark for every model of every benchmark; the score table; one training-curve panel for each
training stage the page's stage table lists; the held-out examples with every model's answer side by side,
marked right or wrong. Needs a Chromium binary (`apt-get install chromium`, or CHROMIUM=/path). Writes
report.png beside the report (a full-page screenshot) and exits non-zero naming what is missing.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

TRAINING = ("sft", "dpo", "rlvr")


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: dict[str, int] = {}
        self.classes: dict[str, int] = {}
        self.curve_stages: list[str] = []
        self.example_answers: list[int] = []  # answers per example
        self.headings: list[str] = []
        self.stage_rows: list[str] = []
        self._in_heading = self._in_stages = self._first_cell = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for name in (attrs.get("class") or "").split():
            self.classes[name] = self.classes.get(name, 0) + 1
        classes = (attrs.get("class") or "").split()
        if tag == "section" and "curves" in classes:
            self.curve_stages.append(attrs.get("data-stage", ""))
        if "example" in classes:
            self.example_answers.append(0)
        if "answer" in classes and self.example_answers:
            self.example_answers[-1] += 1
        self._in_heading = tag in ("h1", "h2")
        if tag == "table":
            self._in_stages = "stages" in classes
        if tag == "tr":
            self._first_cell = self._in_stages

    def handle_data(self, data):
        if self._in_heading and data.strip():
            self.headings.append(data.strip())
            self._in_heading = False
        if self._first_cell and data.strip():
            self.stage_rows.append(data.strip())
            self._first_cell = False


def problems(page: Page, models: int) -> list[str]:
    found = []
    if not any(h.startswith("Gate:") for h in page.headings):
        found.append("no gate verdict heading")
    if page.classes.get("progression", 0) < 1:
        found.append("no score progression chart")
    elif page.classes.get("interval", 0) < 2:
        found.append(f"the progression chart has {page.classes.get('interval', 0)} interval marks")
    if page.classes.get("scores", 0) < 1:
        found.append("no score table")
    for stage in (s for s in page.stage_rows if s in TRAINING):
        if stage not in page.curve_stages:
            found.append(f"no training-curve panel for {stage}")
    if not page.example_answers:
        found.append("no held-out examples")
    elif min(page.example_answers) < models:
        found.append(f"an example shows {min(page.example_answers)} answers for {models} models")
    return found


def main(path: str) -> int:
    report = Path(path).resolve()
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("no chromium found: apt-get install chromium, or set CHROMIUM", file=sys.stderr)
        return 2
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run(flags + ["--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=90).stdout
    page = Page()
    page.feed(dom)
    # Models: the score table's header cells after "benchmark" and "n".
    header = re.search(r'<table class="scores"><tbody><tr>(.*?)</tr>', dom) or re.search(
        r'<table class="scores"><tr>(.*?)</tr>', dom)
    models = max(0, len(re.findall(r"<th>", header[1])) - 2) if header else 0
    # A tall window is the page's full height in a headless screenshot; the page is at most a few screens.
    height = 1500 + 420 * len(page.curve_stages) + 200 * len(page.example_answers)
    shot = report.with_suffix(".png")
    subprocess.run(flags + [f"--screenshot={shot}", f"--window-size=1100,{height}", report.as_uri()],
                   capture_output=True, timeout=90)
    found = problems(page, models)
    if found:
        print(f"{report}: " + "; ".join(found), file=sys.stderr)
        return 1
    print(f"{report}: gate heading; progression chart with {page.classes['interval']} interval marks; "
          f"curve panels {page.curve_stages}; {len(page.example_answers)} examples x {models} models side by side; "
          f"headings {page.headings}; screenshot {shot}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
