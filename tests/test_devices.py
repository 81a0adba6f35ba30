"""Every tensor follows its model's device: logprobs (the DPO margin), generation, PPO, and the eval stage's
one-model-at-a-time rule.

Parametrised on the device. On a CPU-only machine the model also goes to PyTorch's `meta` device, where a
tensor built on the CPU in a GPU path meets a model that is not on the CPU, exactly as it would on CUDA: a
hook on the model (its forward and its generate) asserts that every input is on `model.device` (on `meta` it
then stops the run at the first call, since meta tensors carry no values). With a GPU, `cuda` runs the whole path.
"""
import pytest
import torch

from posttrain import generation

from posttrain.training import logprobs, ppo
from posttrain.data.arithmetic import problems
from posttrain.models.tiny import build
from posttrain.recipe import TinyModel

pytestmark = pytest.mark.slow  # a module of a minute or more: handed out first (conftest.py)

DEVICES = ["cpu", "meta", *(["cuda"] if torch.cuda.is_available() else [])]


class Stop(Exception):
    """Raised by the hook on `meta` once the inputs are checked: nothing can be computed there."""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    rows = list(problems(0, 16, 1, ["add"], ["en"]))
    build((r["messages"][0]["content"] + " " + r["solution"] for r in rows),
          TinyModel(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, vocab_size=320), path)
    return path, rows


def _on(device, tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, rows = tiny
    model = AutoModelForCausalLM.from_pretrained(path).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    seen = []

    def check(module, args, kwargs):
        tensors = [t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)]
        seen.extend(t.device for t in tensors)
        wrong = [f"{t.shape} on {t.device}" for t in tensors if t.device != module.device]
        assert not wrong, f"inputs not on the model's device {module.device}: {wrong}"
        if module.device.type == "meta":
            raise Stop

    model.register_forward_pre_hook(check, with_kwargs=True)
    model.get_decoder().register_forward_pre_hook(check, with_kwargs=True)  # logprobs calls the decoder itself
    original = model.generate

    def generate(*args, **kwargs):  # generate() itself cannot run on meta, so its inputs are checked at the door
        check(model, args, kwargs)
        return original(*args, **kwargs)

    model.generate = generate
    return model, tokenizer, rows, seen


def _run(device, call):
    if device == "meta":
        with pytest.raises(Stop):
            call()
    else:
        return call()


@pytest.mark.parametrize("device", DEVICES)
def test_completion_logprobs_feed_the_model_on_its_device(device, tiny):
    model, tokenizer, rows, seen = _on(device, tiny)
    conversations = [r["messages"] + [{"role": "assistant", "content": r["solution"]}] for r in rows[:4]]
    result = _run(device, lambda: logprobs.completion_logprobs(model, tokenizer, conversations))
    assert seen and {d.type for d in seen} == {device}
    if result is not None:
        assert len(result) == 4 and all(value < 0 for value in result)


@pytest.mark.parametrize("device", DEVICES)
def test_generation_feeds_the_model_on_its_device(device, tiny):
    model, tokenizer, rows, seen = _on(device, tiny)
    tokenizer.padding_side = "left"
    result = _run(device, lambda: generation.generate(model, tokenizer, [r["messages"] for r in rows[:4]], 4, 2))
    assert seen and {d.type for d in seen} == {device}
    if result is not None:
        assert len(result) == 4


@pytest.mark.parametrize("device", DEVICES)
def test_ppo_runs_where_the_policy_is(device, tiny):
    model, tokenizer, rows, seen = _on(device, tiny)
    settings = ppo.Settings(learning_rate=1e-3, beta=0.05, batch_size=4, max_steps=2, temperature=1.0,
                            max_completion_length=4, verified_reward=1.0, no_eos_penalty=-1.0, ppo_epochs=1)
    history = _run(device, lambda: ppo.train(model, tokenizer, rows, lambda texts, **_: [1.0] * len(texts), settings,
                                             log=lambda *_: None))
    assert seen and {d.type for d in seen} == {device}
    if history is not None:  # every forward of a whole run (rollout, scoring, reference, updates) passed the hook
        assert [h["step"] for h in history] == [1, 2] and all(torch.isfinite(torch.tensor(h["kl"])) for h in history)


def test_inference_models_go_to_the_accelerator_in_bf16_there(tiny, monkeypatch):
    from posttrain.training import devices

    model, _ = generation.load(str(tiny[0]))
    assert model.device == devices.accelerator()
    assert model.dtype == (torch.bfloat16 if torch.cuda.is_available() else torch.float32)


def test_eval_scores_each_model_in_its_own_process_when_vllm_is_used(tiny, micro_recipe, monkeypatch):
    """The process-per-model path (taken with vLLM) gives the same scores as the in-process one."""
    from posttrain.stages import eval as stage

    rows = [{**r, "ground_truth": r["ground_truth"]} for r in tiny[1][:4]]
    suites = {"arithmetic": rows}
    models = {"a": tiny[0], "b": tiny[0]}
    recipe = micro_recipe.override(eval={"batch_size": 4})
    here = stage.score_models(recipe, models, suites)
    monkeypatch.setattr(generation, "vllm_wanted", lambda: True)  # the parent's choice; children load as they can
    isolated = stage.score_models(recipe, models, suites)
    assert isolated == here and set(isolated) == {"a", "b"}
