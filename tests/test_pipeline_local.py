"""The compiled pipeline, end to end through kfp.local, on micro settings: every test of the shared runs of
conftest.py (a passing gate, tracked to an MLflow server: `passing_micro_run`; a copy of it rerun with a
baseline and a refused gate: `refused_run_with_a_baseline`), in one module so that pytest-xdist (`--dist
loadfile`) builds them once, on one worker: the passing run's report and artifacts, its tracking, the refused
gate, the baseline's columns, and a rerun after an RLVR change that runs only RLVR and what follows."""
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import IN_CI, ROOT
from posttrain.stage_table import NAMES, STAGES
from posttrain.store import read_manifest
from test_report_html import CHROMIUM
from test_stage_identity import BEFORE_RLVR, _sealed
from test_tracking import _runs

pytestmark = pytest.mark.e2e

_MODEL = {"config.json", "model.safetensors"}
# Every stage that writes an output directory, in pipeline order, with files it always holds beside manifest.json.
EXPECTED_FILES = {
    "data": {"sft.jsonl", "preference.jsonl", "rlvr.jsonl", "heldout.jsonl", "heldout_ifeval.jsonl", "report.json"},
    "base": _MODEL | {"tokenizer.json"},
    "sft": _MODEL | {"tokenizer.json"},
    "preference": {"pairs.jsonl", "heldout_pairs.jsonl", "report.json"},
    "dpo": _MODEL,
    "rlvr": _MODEL | {"progress.html"},
    "eval": {"scores.json"},
    "gate": {"report.json", "report.md"},
}
# promote writes the registry entry only; plan and preflight (the checks every task waits for) write nothing
assert list(EXPECTED_FILES) == [n for n in NAMES if n != "promote" and not STAGES[n].first]


def _registry_entries(root: Path) -> list[Path]:
    return sorted(root.rglob("entry.json")) if root.exists() else []


def test_passing_gate_promotes_with_every_stage_artifact(passing_micro_run):
    report, run = passing_micro_run.report, passing_micro_run.run

    stages = {s["stage"]: s for s in report["stages"]}
    assert list(stages) == list(EXPECTED_FILES)
    for stage, files in EXPECTED_FILES.items():
        manifest = read_manifest(stages[stage]["path"])
        assert manifest["stage"] == stage
        assert files <= set(manifest["files"]), f"{stage} is missing {files - set(manifest['files'])}"
    assert stages["data"]["summary"]["rows"] == {"heldout": 16, "heldout_ifeval": 8, "sft": 64 + 8 + 4,
                                                 "preference": 16, "rlvr": 16 + 4, "preference_pairs": 0}
    rlvr = stages["rlvr"]["summary"]
    assert rlvr["steps"] == 2 and [e["step"] for e in rlvr["log"]] == [1, 2]
    assert all(0.0 <= e["accuracy"] <= 1.0 for e in rlvr["log"])
    data_summary = (Path(stages["data"]["path"]).parent / "summary").read_text()  # the KFP Markdown artifact
    assert data_summary.startswith("# Data") and "## Decontamination" in data_summary
    progress = (Path(stages["rlvr"]["path"]) / "progress.html").read_text()
    assert progress.count("<polyline") == 4 and "accuracy" in progress  # reward, accuracy, KL, length

    assert report["models"] == ["base", "sft", "dpo", "rlvr"] and report["candidate"] == "rlvr"
    for label in report["models"]:
        score = report["benchmarks"]["arithmetic"][label]
        assert score["n"] == 16 and 0.0 <= score["score"] <= 1.0
    assert report["gate"]["passed"] and report["gate"]["reasons"] == []
    assert (run / "report.md").read_text().startswith("# posttrain report")
    assert report["benchmarks"]["humaneval"]["rlvr"]["n"] == 40  # eval.limit: the first 40 of HumanEval's 164
    assert report["limited"]["humaneval"] == {"n": 40, "of": 164} and "| humaneval | 40 of 164 |" in (
        run / "report.md").read_text()
    assert report["sandbox"] == "bwrap"  # HumanEval's programs ran in bubblewrap, and the report says so

    [entry_file] = _registry_entries(passing_micro_run.registry)
    entry = json.loads(entry_file.read_text())
    assert entry["model_sha256"] == read_manifest(stages["rlvr"]["path"])["sha256"]
    assert (entry_file.parent / "model" / "model.safetensors").is_file()


def test_a_pipeline_run_tracks_every_stage_under_one_parent(passing_micro_run):
    """conftest.py's `passing_micro_run`: `posttrain run --local` tracked to its MLflow server."""
    mlflow_server, run_dir = passing_micro_run.mlflow, passing_micro_run.run
    out = passing_micro_run.printed  # what a terminal-less run prints (CI, a pipe)
    assert len(out) <= 60, "\n".join(out)
    table = out.index(next(line for line in out if line.startswith("stage ")))
    assert [line.split()[0] for line in out[table + 1:table + 9]] == ["data", "base", "sft", "preference", "dpo",
                                                                       "rlvr", "eval", "gate"]
    assert out[table + 10] == "gate: PASS" and out[-1].startswith("report: ")
    for stage in ("data", "sft", "dpo", "rlvr", "eval", "gate", "promote"):
        assert (run_dir / "logs" / f"{stage}.log").stat().st_size > 0

    client = MlflowClient(mlflow_server)
    runs = _runs(mlflow_server, "tiny")
    [parent] = [r for name, r in runs.items() if name.startswith("tiny local-")]
    stages = {"data", "sft", "preference", "dpo", "rlvr", "eval", "gate", "promote"}
    assert stages <= set(runs)
    for stage in stages:
        run = runs[stage]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id and run.info.status == "FINISHED"
    assert runs["sft"].data.params["learning_rate"] == "0.003"  # the stage's recipe section
    for stage, metrics in {"sft": ("loss", "learning_rate"), "dpo": ("loss", "learning_rate"),
                           "rlvr": ("reward", "kl", "completions/mean_length", "learning_rate")}.items():
        for metric in metrics:
            history = client.get_metric_history(runs[stage].info.run_id, metric)
            assert len(history) >= 2 and len({m.step for m in history}) == len(history), (stage, metric)
    scores = runs["eval"].data.metrics
    assert scores["arithmetic/rlvr/ci95_low"] <= scores["arithmetic/rlvr"] <= scores["arithmetic/rlvr/ci95_high"]
    artifacts = {a.path for a in client.list_artifacts(runs["gate"].info.run_id)}
    assert {"report.html", "report.json"} <= artifacts
    assert client.get_model_version_by_alias("tiny", "champion").version == "1"

    # the run's own report page, in a browser; the screenshot stays with the run (CI installs Chromium)
    if shutil.which("chromium") or IN_CI:
        check = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_report_html.py"),
                                str(run_dir / "report.html")], capture_output=True, text=True, timeout=300)
        assert check.returncode == 0, check.stderr
        assert "curve panels ['sft', 'dpo', 'rlvr']" in check.stdout and (run_dir / "report.png").is_file()


def test_failing_gate_skips_promotion_and_keeps_the_report(refused_run_with_a_baseline):
    report, run = refused_run_with_a_baseline.report, refused_run_with_a_baseline.run

    assert not report["gate"]["passed"]
    assert any(reason.startswith("arithmetic: rlvr scored") for reason in report["gate"]["reasons"])
    assert "REFUSED" in (run / "report.md").read_text()
    assert _registry_entries(refused_run_with_a_baseline.registry) == []
    assert refused_run_with_a_baseline.fresh, "the run added no pipeline run of its own"
    for added in refused_run_with_a_baseline.fresh:  # (the copied directory holds the passing run's promote)
        assert not list(added.rglob("promote*")), "the promote task must not have run"
        assert list(added.rglob("gate*")), "the gate did not run again"


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


def test_rerun_after_an_rlvr_change_runs_only_rlvr_and_what_follows(refused_run_with_a_baseline, tmp_path):
    """The same command on (a copy of) a finished run's directory, with `rlvr.clip` changed, and the gate's
    threshold and registry (sections only eval, gate and promote read) set so that this time it promotes.
    The shared run is itself a rerun of the passing run: its directory holds two pipeline runs' outputs."""
    from posttrain.pipelines import local

    shared = refused_run_with_a_baseline
    out = shutil.copytree(shared.run, tmp_path / "run")
    first = _sealed(out)
    assert set(BEFORE_RLVR) <= set(first)
    local.run(shared.recipe.override(rlvr={"clip": 0.13}, promote={"min_accuracy": {"arithmetic": 0.0},
                                                                   "registry": (tmp_path / "registry").as_uri()}),
              out, out=io.StringIO())
    second = _sealed(out)
    ran = {stage for stage in second if second[stage] != first.get(stage, set())}
    assert ran == {"rlvr", "eval", "gate"}, ran
    assert len(sorted((tmp_path / "registry").rglob("entry.json"))) == 1  # promote ran too
    for stage in BEFORE_RLVR:
        assert second[stage] == first[stage]
