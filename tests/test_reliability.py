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

pytestmark = pytest.mark.slow  # a module of a minute or more: handed out first (conftest.py)


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


@pytest.fixture(scope="module")
def stage_inputs(tmp_path_factory):
    """Every training stage's inputs on the micro settings: data, base, an SFT model, preference pairs."""
    from conftest import ROOT
    from posttrain.recipe import load
    from posttrain.stages import preference

    recipe = load(ROOT / "recipes" / "tiny.yaml").override(  # tests/conftest.py's micro_recipe
        model={"tiny": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
                        "vocab_size": 320, "max_positions": 256}},
        data={"sft_rows": 64, "preference_prompts": 16, "rlvr_prompts": 16, "heldout_rows": 16, "synthesis": {}},
        sft={"epochs": 1, "batch_size": 32, "warmup": 0},
        preference={"samples_per_prompt": 2, "max_new_tokens": 8, "heldout_fraction": 0.25, "include_reference": True},
        rlvr={"batch_size": 16, "num_generations": 4, "max_completion_length": 8},
    )
    root = tmp_path_factory.mktemp("stage_inputs")
    data.run(recipe, root / "data")
    base.run(recipe, root / "data", root / "base")
    sft.run(recipe, root / "base", root / "data", root / "sft")
    preference.run(recipe, root / "sft", root / "data", root / "pairs")
    return recipe, root


# stage -> (its module, its inputs under stage_inputs' root, the recipe change that gives it ~8 steps to cut)
KILLED = {
    "sft": ("sft", ("base", "data"), {"sft": {"batch_size": 8, "checkpoints": {"every": 2}}}),
    "dpo": ("dpo", ("sft", "pairs"), {"dpo": {"batch_size": 1, "epochs": 1, "checkpoints": {"every": 2}}}),
    # 2 prompts per step: the 8 steps stay in the first pass over the 16 prompts (TRL 1.16's RepeatSampler has no
    # set_epoch, so a run resumed in a later pass would draw that pass's prompt order afresh). The micro model is
    # never right: the no-EOS penalty is the reward that differs within a group and so moves the weights.
    "grpo": ("rlvr", ("sft", "data"), {"rlvr": {"batch_size": 8, "max_steps": 8, "no_eos_penalty": -1.0,
                                                "checkpoints": {"every": 2}}}),
    "ppo": ("rlvr", ("sft", "data"), {"rlvr": {"algorithm": "ppo", "num_generations": 8, "max_steps": 8,
                                               "checkpoints": {"every": 2}}}),
}


@pytest.mark.parametrize("name", list(KILLED))
def test_each_training_stage_sigkilled_resumes_to_the_uninterrupted_weights(name, stage_inputs, tmp_path, monkeypatch):
    """Through the shared skeleton (training/stage.py): SIGKILL after the second checkpoint, run again; the
    rerun resumes from the newest whole checkpoint and ends on the weights an uninterrupted run ends on."""
    import importlib

    from posttrain.training.checkpoints import ENV

    monkeypatch.delenv(ENV, raising=False)  # checkpoints in <out>/trainer
    module, inputs, change = KILLED[name]
    recipe = stage_inputs[0].override(**change)
    stage_run = importlib.import_module(f"posttrain.stages.{module}").run
    paths = [stage_inputs[1] / i for i in inputs]
    reference = stage_run(recipe, *paths, tmp_path / "uninterrupted")
    assert reference["steps"] >= 6 and reference["resumed_from"] is None

    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(recipe.to_yaml())
    killed = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, "-c", CHILD.replace("sft", module), str(recipe_file), *map(str, paths),
                              str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             # this process's thread count: another one sums logits in another order, and a
                             # sampled token near a tie (GRPO, PPO rollouts) can then differ
                             env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    _wait_for(killed / "trainer" / "checkpoint-4" / MARKER, child, timeout=300)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert not (killed / "manifest.json").exists()
    newest = latest_complete(killed / "trainer")

    summary = stage_run(recipe, *paths, killed)
    assert summary["resumed_from"] == newest.name and summary["steps"] == reference["steps"]
    assert not (killed / "trainer").exists()  # checkpoints go once the output is sealed
    assert _max_diff(_weights(killed), _weights(tmp_path / "uninterrupted")) <= 1e-5
    assert _max_diff(_weights(killed), _weights(paths[0])) > 1e-4  # training moved the weights: equality means something
