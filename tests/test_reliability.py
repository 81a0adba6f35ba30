"""Resume after SIGKILL, fallback past a broken checkpoint, the finite-loss guard (issue 9)."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from posttrain.stages import base, data, sft
from posttrain.training import stage
from posttrain.training.trainer import MARKER, NonFiniteLoss, checkpoints, latest_complete


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Data and a base model, shared; SFT long enough (120 steps) to be interrupted mid-run."""
    from conftest import ROOT
    from posttrain.recipe import load

    recipe = load(ROOT / "recipes" / "tiny.yaml").override(
        model={"tiny": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
                        "vocab_size": 320, "max_positions": 256}},
        data={"sft_rows": 480, "preference_prompts": 1, "rlvr_prompts": 1, "heldout_rows": 1, "synthesis": {}},
        sft={"epochs": 1, "batch_size": 4, "warmup": 0, "checkpoints": {"every": 10, "keep": 3}},
    )
    root = tmp_path_factory.mktemp("prepared")
    data.run(recipe, root / "data")
    base.run(recipe, root / "data", root / "base")
    return recipe, root


CHILD = ("import sys; from posttrain.recipe import load; from posttrain.stages import sft; "
         "sft.run(load(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4])")


def _wait_for(path, child, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert child.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.02)


def _weights(path):
    return load_file(str(path / "model.safetensors"))


def _max_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_sigkill_mid_run_resumes_from_last_complete_checkpoint(prepared, tmp_path):
    recipe, root = prepared
    reference = tmp_path / "uninterrupted"
    sft.run(recipe, root / "base", root / "data", reference)

    killed = tmp_path / "killed"
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(recipe.to_yaml())
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(recipe_file), str(root / "base"),
                              str(root / "data"), str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(killed / "trainer" / "checkpoint-20" / MARKER, child)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert not (killed / "manifest.json").exists()
    newest = latest_complete(killed / "trainer")
    assert newest is not None and int(newest.name.split("-")[1]) >= 20

    summary = sft.run(recipe, root / "base", root / "data", killed)
    assert summary["resumed_from"] == newest.name
    assert summary["steps"] == 120
    assert _max_diff(_weights(killed), _weights(reference)) < 1e-5


def test_resume_skips_a_checkpoint_without_marker_or_with_a_truncated_file(prepared, tmp_path, monkeypatch):
    recipe, root = prepared
    out = tmp_path / "out"
    monkeypatch.setattr(stage, "discard_checkpoints", lambda root: None)  # keep the checkpoints of a finished run
    sft.run(recipe, root / "base", root / "data", out)
    assert [p.name for p in checkpoints(out / "trainer")] == ["checkpoint-120", "checkpoint-110", "checkpoint-100"]

    (out / "manifest.json").unlink()  # as if killed after its last checkpoints, before sealing the output
    (out / "trainer" / "checkpoint-120" / MARKER).unlink()  # killed before its marker was written
    weights = out / "trainer" / "checkpoint-110" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated afterwards
    assert latest_complete(out / "trainer").name == "checkpoint-100"
    summary = sft.run(recipe, root / "base", root / "data", out)
    assert summary["resumed_from"] == "checkpoint-100" and summary["steps"] == 120


def test_sigterm_saves_a_checkpoint_and_stops(prepared, tmp_path):
    recipe, root = prepared
    out = tmp_path / "term"
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(recipe.to_yaml())
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(recipe_file), str(root / "base"), str(root / "data"),
                              str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(out / "trainer" / "checkpoint-10" / MARKER, child)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    found = re.search(r"Preempted: sft: stopped by SIGTERM at step (\d+);", err)
    assert child.returncode != 0 and found, err[-2000:]
    step = int(found.group(1))
    assert latest_complete(out / "trainer").name == f"checkpoint-{step}" and step < 120


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(prepared, tmp_path, monkeypatch):
    recipe, root = prepared
    load = AutoModelForCausalLM.from_pretrained.__func__

    def poisoned(cls, *args, **kwargs):
        model = load(cls, *args, **kwargs)
        calls = {"n": 0}

        def hook(module, inputs, output):
            calls["n"] += 1
            return output * float("nan") if calls["n"] > 25 else output

        model.model.norm.register_forward_hook(hook)  # TRL may compute the loss from hidden states itself
        return model

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(poisoned))
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLoss, match=r"loss is nan at step 26; last good checkpoint: .*checkpoint-20"):
        sft.run(recipe, root / "base", root / "data", out)
    assert latest_complete(out / "trainer").name == "checkpoint-20"
    good = _weights(out / "trainer" / "checkpoint-20")
    assert all(torch.isfinite(t).all() for t in good.values())
    assert not (out / "manifest.json").exists()


DPO_CHILD = ("import sys; from posttrain.recipe import load; from posttrain.stages import dpo; "
             "dpo.run(load(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4])")


def test_dpo_preempted_by_sigterm_resumes_from_its_checkpoint(micro_recipe, tmp_path):
    from posttrain.stages import preference

    recipe = micro_recipe.override(dpo={"batch_size": 1, "epochs": 4, "checkpoints": {"every": 2, "keep": 2}})
    data.run(recipe, tmp_path / "data")
    base.run(recipe, tmp_path / "data", tmp_path / "base")
    sft.run(recipe, tmp_path / "base", tmp_path / "data", tmp_path / "sft")
    preference.run(recipe, tmp_path / "sft", tmp_path / "data", tmp_path / "pairs")
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(recipe.to_yaml())
    out = tmp_path / "dpo"
    command = [sys.executable, "-c", DPO_CHILD, str(recipe_file), str(tmp_path / "sft"), str(tmp_path / "pairs"), str(out)]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(out / "trainer" / "checkpoint-2" / MARKER, child)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    found = re.search(r"Preempted: dpo: stopped by SIGTERM at step (\d+);", err)
    assert child.returncode != 0 and found, err[-2000:]
    stopped = latest_complete(out / "trainer")
    assert not (out / "manifest.json").exists()

    from posttrain.stages import dpo

    summary = dpo.run(recipe, tmp_path / "sft", tmp_path / "pairs", out)
    assert summary["resumed_from"] == stopped.name and summary["steps"] > int(found.group(1))
    assert not (out / "trainer").exists()  # checkpoints go once the model is sealed
