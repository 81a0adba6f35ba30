"""Durable checkpoints (issue 18): keyed by recipe and inputs, PPO resumes exactly, stale keys go."""
import os
import time

import pytest
import torch
from safetensors.torch import load_model

from posttrain.training import checkpoints, ppo
from posttrain.data.arithmetic import problems
from posttrain.models.tiny import build
from posttrain.recipe import TinyModel, load
from posttrain.store import seal
from posttrain.training.trainer import MARKER, Checkpointing, latest_complete

from conftest import ROOT


def _tiny_policy(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = list(problems(0, 32, 1, ["add"], ["en"]))
    if not (path / "config.json").exists():
        build((r["messages"][0]["content"] + " " + r["solution"] for r in rows),
              TinyModel(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, vocab_size=320), path)
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path), rows


SETTINGS = ppo.Settings(learning_rate=1e-2, beta=0.05, batch_size=8, max_steps=6, temperature=1.0,
                        max_completion_length=6, verified_reward=1.0, no_eos_penalty=0.0, ppo_epochs=2, warmup_steps=2,
                        lr_scheduler="linear")


def _sevens(completions, **_):
    return [1.0 if "7" in text else 0.0 for text in completions]


def test_ppo_resumes_from_its_newest_complete_checkpoint_with_the_same_result(tmp_path):
    model_dir = tmp_path / "model"
    reference, tokenizer, rows = _tiny_policy(model_dir)
    expected = ppo.train(reference, tokenizer, rows, _sevens, SETTINGS, log=lambda *_: None)

    calls = {"n": 0}

    def crashes_in_step_5(completions, **row):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("killed")  # as a kill would: no save, no cleanup
        return _sevens(completions)

    saved = tmp_path / "ckpt"
    policy, _, _ = _tiny_policy(model_dir)
    with pytest.raises(KeyboardInterrupt):
        ppo.train(policy, tokenizer, rows, crashes_in_step_5, SETTINGS, log=lambda *_: None,
                  checkpoints=Checkpointing(saved, every=2, keep=2))
    assert [p.name for p in sorted(saved.iterdir())] == ["checkpoint-2", "checkpoint-4"]
    assert all((saved / name / MARKER).exists() for name in ("checkpoint-2", "checkpoint-4"))

    policy, _, _ = _tiny_policy(model_dir)  # a new process starts from the stage's input again
    resumer = Checkpointing(saved, every=2, keep=2)
    history = ppo.train(policy, tokenizer, rows, _sevens, SETTINGS, log=lambda *_: None, checkpoints=resumer)
    assert resumer.resumed_from.name == "checkpoint-4"
    assert [h["step"] for h in history] == list(range(1, 7))
    assert [h["reward"] for h in history] == [h["reward"] for h in expected]
    diff = max((a - b).abs().max().item() for a, b in zip(policy.state_dict().values(),
                                                           reference.state_dict().values()))
    assert diff <= 1e-5
    assert latest_complete(saved).name == "checkpoint-6"

    restored, _, _ = _tiny_policy(model_dir)  # the checkpoint holds the weights of its step
    load_model(restored, str(saved / "checkpoint-6" / "policy.safetensors"))
    assert all(torch.equal(a, b) for a, b in zip(restored.state_dict().values(), policy.state_dict().values()))


def test_the_key_follows_recipe_and_input_contents_and_stale_keys_are_deleted(tmp_path, monkeypatch):
    recipe = load(ROOT / "recipes" / "tiny.yaml")
    inputs = {}
    for name in ("base", "data"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.txt").write_text(name)
        seal(tmp_path / name, name, recipe.digest())
        inputs[name] = tmp_path / name
    assert checkpoints.directory(recipe, "sft", inputs, tmp_path / "out") == tmp_path / "out" / "trainer"

    monkeypatch.setenv(checkpoints.ENV, str(tmp_path / "volume"))
    first = checkpoints.directory(recipe, "sft", inputs, tmp_path / "out")
    assert first.parent == tmp_path / "volume" / "sft" and first.is_dir()
    assert checkpoints.directory(recipe, "sft", inputs, tmp_path / "elsewhere") == first  # another pod, same key
    other_recipe = recipe.override(sft={"learning_rate": 1e-3})
    assert checkpoints.directory(other_recipe, "sft", inputs, tmp_path / "out") != first
    (tmp_path / "data" / "x.txt").write_text("changed")
    seal(tmp_path / "data", "data", recipe.digest())  # other data, same paths
    changed = checkpoints.directory(recipe, "sft", inputs, tmp_path / "out")
    assert changed != first

    old = time.time() - 8 * 86400  # beyond the default 7 days of retention
    for path in [first, *first.rglob("*")]:
        os.utime(path, (old, old))
    deleted = checkpoints.clean_stale(recipe, "sft")
    assert deleted == [first] and not first.exists() and changed.exists()

    mirrored = recipe.override(cluster={"checkpoint_url": "s3://bucket/ckpt/"})
    assert checkpoints.remote(recipe, "sft", inputs) is None
    assert checkpoints.remote(mirrored, "sft", inputs) == \
        f"s3://bucket/ckpt/sft/{checkpoints.key('sft', mirrored.digest(), inputs)}"


def test_a_new_pod_without_the_volume_resumes_from_the_checkpoint_url(tmp_path, s3):
    """`cluster.checkpoint_url`: each complete checkpoint is copied to S3 (moto on loopback); a pod that
    starts with an empty disk fetches the newest one and ends where an uninterrupted run ends."""
    import fsspec

    model_dir = tmp_path / "model"
    reference, tokenizer, rows = _tiny_policy(model_dir)
    expected = ppo.train(reference, tokenizer, rows, _sevens, SETTINGS, log=lambda *_: None)

    url = "s3://posttrain/checkpoints/rlvr/somekey"
    calls = {"n": 0}

    def crashes_in_step_5(completions, **row):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("preempted")
        return _sevens(completions)

    policy, _, _ = _tiny_policy(model_dir)
    with pytest.raises(KeyboardInterrupt):
        ppo.train(policy, tokenizer, rows, crashes_in_step_5, SETTINGS, log=lambda *_: None,
                  checkpoints=Checkpointing(tmp_path / "pod1", every=2, keep=1, mirror=url))
    fs = fsspec.filesystem("s3")
    assert [p.rsplit("/", 1)[1] for p in fs.ls(url)] == ["checkpoint-4"]  # keep: 1
    assert fs.exists(f"{url}/checkpoint-4/{MARKER}")

    policy, _, _ = _tiny_policy(model_dir)
    second_pod = Checkpointing(tmp_path / "pod2", every=2, keep=1, mirror=url)  # nothing on its disk
    history = ppo.train(policy, tokenizer, rows, _sevens, SETTINGS, log=lambda *_: None, checkpoints=second_pod)
    assert second_pod.resumed_from == tmp_path / "pod2" / "checkpoint-4"
    assert [h["reward"] for h in history] == [h["reward"] for h in expected]
    diff = max((a - b).abs().max().item() for a, b in zip(policy.state_dict().values(),
                                                           reference.state_dict().values()))
    assert diff <= 1e-5

    checkpoints.drop(url)  # what the stage does once its output is sealed
    assert not fs.exists(url)


def test_every_minutes_saves_at_the_next_step_end_once_the_time_has_passed(tmp_path, monkeypatch):
    """`checkpoints.every_minutes`: the shared policy asks for a save at the first step end that many minutes
    after the last save, as a trainer callback (TRL) and through `due` (PPO's loop)."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from posttrain.training import trainer

    clock = {"now": 1000.0}
    monkeypatch.setattr(trainer.time, "monotonic", lambda: clock["now"])
    policy = Checkpointing(tmp_path, every=0, every_minutes=2.0)
    args, state = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none"), TrainerState()
    assert not policy.due(1) and not policy.on_step_end(args, state, TrainerControl()).should_save
    clock["now"] += 119
    assert not policy.due(2)
    clock["now"] += 2
    assert policy.due(3) and policy.on_step_end(args, state, TrainerControl()).should_save
    (tmp_path / "checkpoint-3").mkdir()
    policy.saved(tmp_path / "checkpoint-3", 3)  # the trainer's on_save calls this too
    assert latest_complete(tmp_path).name == "checkpoint-3"
    assert not policy.due(4) and not policy.on_step_end(args, state, TrainerControl()).should_save
    assert Checkpointing(tmp_path, every=2).due(4) and not Checkpointing(tmp_path).due(4)  # 0: off


def test_ppo_saves_on_the_clock_through_the_shared_policy(tmp_path):
    policy, tokenizer, rows = _tiny_policy(tmp_path / "model")
    saved = Checkpointing(tmp_path / "ckpt", every=0, every_minutes=1e-9, keep=10)  # every step is "due"
    ppo.train(policy, tokenizer, rows, _sevens, ppo.Settings(**{**SETTINGS.__dict__, "max_steps": 3}),
              log=lambda *_: None, checkpoints=saved)
    assert [p.name for p in sorted((tmp_path / "ckpt").iterdir())] == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    assert latest_complete(tmp_path / "ckpt").name == "checkpoint-3"
