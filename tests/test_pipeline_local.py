"""The compiled pipeline, end to end through kfp.local, on micro settings: the shared runs of conftest.py (a
passing gate: `passing_micro_run`; a refused one: `refused_run_with_a_baseline`)."""
import json
from pathlib import Path

import pytest

from posttrain.stage_table import NAMES, STAGES
from posttrain.store import read_manifest

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
