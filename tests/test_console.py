"""What a local run shows: stage lines, per-stage logs, and a failed stage named with the end of its log."""
import io
import logging
import sqlite3

import pytest

from posttrain import cli

from posttrain.reporting import progress
from posttrain.pipelines.console import Display, StageLogs


def test_stage_output_goes_to_its_log_and_plain_lines_to_the_screen(tmp_path, monkeypatch):
    logs, screen = StageLogs(tmp_path / "logs"), io.StringIO()
    (tmp_path / "progress").mkdir()
    with Display(logs, tmp_path / "progress", screen, ("data", "sft"), live=False):
        # kfp.local announces a task through the root logger, then prints the task's output
        logging.getLogger().warning("Executing task \x1b[96m'sft'\x1b[0m")
        logs.write("    {'loss': 2.5, 'learning_rate': 0.003}\n")
        monkeypatch.setenv(progress.ENV, str(tmp_path / "progress"))
        progress.report("sft", 10, 40, {"loss": 1.25, "learning_rate": 0.001})  # what the stage's callback does
        logging.getLogger().warning("Task \x1b[96m'sft'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m")
    logs.close()
    assert "'loss': 2.5" in (tmp_path / "logs" / "sft.log").read_text()
    [line] = screen.getvalue().splitlines()
    assert line.split()[:2] == ["sft", "done"] and line.endswith("loss 1.25")


@pytest.mark.e2e
def test_a_failing_stage_is_named_with_its_log(micro_recipe, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    missing = tmp_path / "nowhere" / "rows.jsonl"
    recipe = micro_recipe.override(data={"sources": [{"name": "extra", "path": str(missing), "rows": 4}]})
    (tmp_path / "recipe.yaml").write_text(recipe.to_yaml())

    assert cli.main(["run", str(tmp_path / "recipe.yaml"), "--local", "--out", str(tmp_path / "run")]) == 1
    out, err = capsys.readouterr()
    log = tmp_path / "run" / "logs" / "data.log"
    assert "stage data failed" in err and f"full log: {log}" in err
    assert f"{missing}: no such file" in err  # the end of the log, on the screen
    assert f"{missing}: no such file" in log.read_text() and "executor_input" not in out + err
    assert len((out + err).splitlines()) < 25
    # The local default tracker (SQLite in the run directory, no server) recorded the stage as failed.
    with sqlite3.connect(tmp_path / "run" / "mlflow.db") as db:
        runs = dict(db.execute("select name, status from runs"))
    assert runs["data"] == "FAILED" and any(name.startswith("tiny local-") for name in runs)


def test_a_terminal_gets_a_bar_with_steps_eta_and_the_key_metric(tmp_path, monkeypatch):
    logs, screen = StageLogs(tmp_path / "logs"), io.StringIO()
    (tmp_path / "progress").mkdir()
    monkeypatch.setenv(progress.ENV, str(tmp_path / "progress"))
    with Display(logs, tmp_path / "progress", screen, ("data", "sft"), live=True) as display:
        display.start("data")
        display.finish("data", ok=True)
        display.start("sft")
        progress.report("sft", 30, 40, {"loss": 0.75})
        display._poll("sft")
        display.finish("sft", ok=True)
    logs.close()
    lines = [line for line in screen.getvalue().splitlines() if line.strip()]
    sft = next(line for line in reversed(lines) if " sft " in line)
    assert "40/40" in sft and "loss 0.75" in sft and "eta" in sft and "✓" in sft
