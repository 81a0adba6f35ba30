"""What a local run shows: one line per stage (a live bar, ETA and key metric on a terminal; a plain line per
finished stage otherwise), while every stage's full output goes to `DIR/logs/<stage>.log`.

The seam in kfp.local (2.17): SubprocessRunner streams each task's output into the parent with `print`, and
the dispatcher announces tasks through the root logger ("Executing task 'sft'", "Task 'sft' finished with
status SUCCESS") on a handler built on `sys.stdout` at that moment. So during a run `sys.stdout` and
`sys.stderr` are a `StageLogs` that writes to the running stage's file, and a filter on the root logger
(filters survive kfp's handler swaps) moves it from stage to stage. The stages report their steps through
`posttrain.reporting.progress` files, which the display polls.
"""
from __future__ import annotations

import io
import logging
import re
import threading
import time
from collections import deque
from pathlib import Path

from posttrain.reporting import progress

ANSI = re.compile(r"\x1b\[[0-9;]*m")
STARTED = re.compile(r"Executing task '([^']+)'")
FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
# A pipeline names the innermost failed task first ("Inner task failed: 'sft' inside 'condition-1'").
FAILED = re.compile(r"Inner task failed: '([^']+)'|Task '([^']+)' finished with status FAILURE")


class StageFailed(RuntimeError):
    """A stage of a local run failed; the message names the stage, the end of its log and the log's path."""

    def __init__(self, stage: str, log: Path, tail: list[str]):
        self.stage, self.log, self.tail = stage, log, tail
        lines = "\n".join(f"  | {line}" for line in tail)
        super().__init__(f"stage {stage} failed; the last lines of its log:\n{lines}\nfull log: {log}")


class StageLogs(io.TextIOBase):
    """A stand-in for sys.stdout/sys.stderr: text goes to `<dir>/<current stage>.log` (ANSI colour removed)."""

    def __init__(self, log_dir: Path):
        self.dir, self.current, self._files, self._lock = log_dir, "pipeline", {}, threading.Lock()
        log_dir.mkdir(parents=True, exist_ok=True)

    def writable(self) -> bool:
        return True

    def path(self, stage: str) -> Path:
        return self.dir / f"{stage}.log"

    def write(self, text: str) -> int:
        with self._lock:
            if self.current not in self._files:
                self._files[self.current] = self.path(self.current).open("a", encoding="utf-8")
            handle = self._files[self.current]
            handle.write(ANSI.sub("", text))
            handle.flush()
        return len(text)

    def tail(self, stage: str, lines: int = 15) -> list[str]:
        try:
            with self.path(stage).open(encoding="utf-8", errors="replace") as handle:
                kept = deque((line.rstrip() for line in handle if line.strip()), maxlen=lines)
        except OSError:
            return []
        return [line.strip() for line in kept]

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()


def key_metric(metrics: dict) -> str:
    for name in progress.KEY_METRICS:
        if name in metrics:
            return f"{name} {metrics[name]:.3g}"
    return ""


class Display(logging.Filter):
    """Follows kfp.local's task announcements; draws the stages on `out` (rich on a terminal, else plain lines)."""

    def __init__(self, logs: StageLogs, progress_dir: Path, out, stages: tuple[str, ...], live: bool):
        super().__init__()
        self.logs, self.progress_dir, self.out, self.live = logs, progress_dir, out, live
        self.started: dict[str, float] = {}
        self.metric: dict[str, str] = {}
        self.finished: set[str] = set()
        self._stop = threading.Event()
        self._bars = None
        if live:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._bars = Progress(TextColumn("{task.fields[mark]}"), TextColumn("{task.description:<11}"),
                                  SpinnerColumn(finished_text=" "), BarColumn(bar_width=30), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                  TextColumn("{task.fields[metric]}"),
                                  console=Console(file=out), redirect_stdout=False, redirect_stderr=False,
                                  refresh_per_second=4)
            # A stage's line appears when it starts (a stage skipped by the gate never shows).
            self._tasks = {s: self._bars.add_task(s, total=None, start=False, visible=False, mark="·", metric="")
                           for s in stages}

    # kfp.local's log records pass through here (a filter on the root logger); they still reach the log file.
    def filter(self, record: logging.LogRecord) -> bool:
        message = ANSI.sub("", record.getMessage())
        if found := STARTED.search(message):
            self.start(found[1])
        elif found := FINISHED.search(message):
            self.finish(found[1], found[2] == "SUCCESS")
        return True

    def start(self, stage: str) -> None:
        self.logs.current = stage
        self.started[stage] = time.monotonic()
        if self._bars is not None and stage in self._tasks:
            self._bars.start_task(self._tasks[stage])
            self._bars.update(self._tasks[stage], mark="[yellow]▶[/]", visible=True)

    def finish(self, stage: str, ok: bool) -> None:
        self.finished.add(stage)
        self._poll(stage)
        seconds = time.monotonic() - self.started.get(stage, time.monotonic())
        if self._bars is not None and stage in self._tasks:
            task = self._tasks[stage]
            total = self._bars.tasks[task].total or 1
            self._bars.update(task, total=total, completed=total if ok else self._bars.tasks[task].completed,
                              mark="[green]✓[/]" if ok else "[red]✗[/]")
            self._bars.stop_task(task)
        elif not self.live:
            word = "done" if ok else "FAILED"
            print(f"{stage:<11}{word:<7}{seconds:>6.0f}s  {self.metric.get(stage, '')}".rstrip(), file=self.out,
                  flush=True)

    def _poll(self, stage: str) -> None:
        state = progress.read(self.progress_dir, stage)
        if not state:
            return
        self.metric[stage] = key_metric(state.get("metrics", {}))
        if self._bars is not None and stage in self._tasks:
            self._bars.update(self._tasks[stage], total=state.get("total"), completed=state.get("step", 0),
                              metric=self.metric[stage])

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            current = self.logs.current
            if current in self.started:
                self._poll(current)

    def __enter__(self) -> "Display":
        logging.getLogger().addFilter(self)
        if self._bars is not None:
            self._bars.start()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        logging.getLogger().removeFilter(self)
        if self._bars is not None:
            self._bars.stop()

    def failure(self, error: BaseException) -> StageFailed | None:
        """The StageFailed for kfp.local's "task finished with status FAILURE" error, else None."""
        found = FAILED.search(ANSI.sub("", str(error)))
        if not found:
            return None
        stage = found[1] or found[2]
        if stage not in self.finished:
            self.finish(stage, ok=False)
        return StageFailed(stage, self.logs.path(stage), self.logs.tail(stage))
