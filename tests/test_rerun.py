"""Preemption, end to end (issue 18): kill a local `posttrain run` with SIGKILL, run the same command again.

Finished stages are reused untouched, the interrupted training stage resumes from its newest complete
checkpoint (in <run dir>/checkpoints, outside the task's output), and its result equals an uninterrupted
run's. SFT is interrupted in the first run, PPO in the second; the third finishes.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from posttrain.training.checkpoints import ENV
from posttrain.recipe import load
from posttrain.store import read_manifest
from posttrain.training.trainer import MARKER, latest_complete

pytestmark = pytest.mark.e2e


def _start(recipe_file: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(ENV, None)
    command = [sys.executable, "-m", "posttrain.cli", "run", str(recipe_file), "--local", "--out", str(out)]
    return subprocess.Popen(command, env=env, start_new_session=True, stdout=open(out.parent / "log.txt", "a"),
                            stderr=subprocess.STDOUT)


def _kill_after(child: subprocess.Popen, pattern: str, root: Path, timeout: float = 600) -> None:
    """SIGKILL the whole process group once a file matching `pattern` exists under `root`."""
    deadline = time.monotonic() + timeout
    while not list(root.glob(pattern)):
        if child.poll() is not None:
            log = (root.parent / "log.txt").read_text()[-3000:]
            raise AssertionError(f"the run ended before it could be interrupted: {log}")
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def _outputs(out: Path) -> dict[str, dict]:
    """stage -> {output directory: (mtime_ns, size) of each file}, for every sealed output of every run."""
    found: dict[str, dict] = {}
    for manifest in (out / "kfp").rglob("manifest.json"):
        files = {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in manifest.parent.rglob("*") if p.is_file()}
        found.setdefault(read_manifest(manifest.parent)["stage"], {})[str(manifest.parent)] = files
    return found


def _max_diff(a: Path, b: Path) -> float:
    x, y = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return max((x[k] - y[k]).abs().max().item() for k in x)


def test_sigkilled_run_reruns_reusing_finished_stages_and_resuming_training(micro_recipe, tmp_path, monkeypatch):
    out = (tmp_path / "run").resolve()
    out.mkdir()
    recipe = micro_recipe.override(
        sft={"batch_size": 2, "checkpoints": {"every": 4, "keep": 2}},  # 38 steps
        rlvr={"algorithm": "ppo", "num_generations": 8, "max_steps": 12,  # num_generations: GRPO only
              "checkpoints": {"every": 2, "keep": 2}},
        eval={"benchmarks": ["arithmetic"], "max_new_tokens_for": {}},  # the eval stage is not what is tested
        # nor is tracking or MLflow's registry (test_tracking.py): each task saves MLflow's import, ~7 s
        tracking={"backend": "none"}, promote={"model_registry": "none"},
    )
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(recipe.to_yaml())

    # 1. Killed in the middle of SFT, after its second checkpoint.
    _kill_after(_start(recipe_file, out), f"checkpoints/sft/*/checkpoint-8/{MARKER}", out)
    first = _outputs(out)
    assert set(first) == {"data", "base"}
    [sft_key] = (out / "checkpoints" / "sft").iterdir()
    sft_resume = latest_complete(sft_key)
    assert int(sft_resume.name.split("-")[1]) >= 8

    # 2. The same command: data and base reused, SFT resumes; killed in the middle of PPO.
    _kill_after(_start(recipe_file, out), f"checkpoints/rlvr/*/checkpoint-2/{MARKER}", out)
    second = _outputs(out)
    for stage in ("data", "base"):
        assert second[stage] == first[stage], f"{stage} was recomputed or touched"
    assert set(second) == {"data", "base", "sft", "preference", "dpo"}
    [sft_dir] = second["sft"]
    sft_summary = read_manifest(sft_dir)["summary"]
    assert sft_summary["resumed_from"] == sft_resume.name and sft_summary["steps"] == 38
    assert sft_summary["resumed_from_path"] == str(sft_resume)
    assert not sft_key.exists()  # its checkpoints went once the output was sealed
    [rlvr_key] = (out / "checkpoints" / "rlvr").iterdir()
    rlvr_resume = latest_complete(rlvr_key)

    # 3. Again: everything before RLVR reused, PPO resumes, the run finishes with its report.
    child = _start(recipe_file, out)
    assert child.wait(timeout=900) == 0, (tmp_path / "log.txt").read_text()[-3000:]
    third = _outputs(out)
    for stage in ("data", "base", "sft", "preference", "dpo"):
        assert third[stage] == second[stage], f"{stage} was recomputed or touched"
    [rlvr_dir] = third["rlvr"]
    rlvr_summary = read_manifest(rlvr_dir)["summary"]
    assert rlvr_summary["resumed_from"] == rlvr_resume.name and rlvr_summary["steps"] == 12
    assert [e["step"] for e in rlvr_summary["log"]] == list(range(1, 13))
    report = json.loads((out / "report.json").read_text())
    assert {s["stage"]: s["path"] for s in report["stages"]}["sft"] == sft_dir  # the reused output is reported

    # The resumed stages equal uninterrupted runs of the same stages on the same inputs.
    from posttrain.stages import rlvr, sft

    monkeypatch.delenv(ENV, raising=False)
    as_run = recipe.override(promote={"registry": (out / "registry").as_uri()})  # what `posttrain run` trains
    [data_dir], [base_dir], [dpo_dir] = second["data"], second["base"], second["dpo"]
    sft.run(as_run, base_dir, data_dir, tmp_path / "sft-uninterrupted")
    rlvr.run(as_run, dpo_dir, data_dir, tmp_path / "rlvr-uninterrupted")
    sft_diff = _max_diff(Path(sft_dir), tmp_path / "sft-uninterrupted")
    rlvr_diff = _max_diff(Path(rlvr_dir), tmp_path / "rlvr-uninterrupted")
    print(f"max abs weight difference, resumed vs uninterrupted: sft {sft_diff:.3g}, ppo {rlvr_diff:.3g}")
    assert sft_diff <= 1e-5 and rlvr_diff <= 1e-5
    assert _max_diff(Path(rlvr_dir), Path(dpo_dir)) > 1e-4  # PPO did move the weights: the equality means something
