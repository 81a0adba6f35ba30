"""Score records whichever engine ran: pass@k from n sampled completions, and gaps to baselines paired on items."""
import dataclasses

import pytest

from posttrain.evals import BENCHMARKS
from posttrain.evals.protocol import Protocol, pass_at_k
from posttrain.evals.records import gaps, record
from posttrain.reporting.report import render_html, render_markdown


@pytest.fixture
def tiny_model(tmp_path, micro_recipe):
    from posttrain.models import tiny

    tiny.build(["The answer is 12.", "abc def", "x = 1 + 2"] * 20, micro_recipe.model.tiny, tmp_path / "m")
    return tmp_path / "m"


def test_protocol_sampling_scores_pass_at_k_over_n_samples_per_item(tiny_model, micro_recipe, monkeypatch):
    """A benchmark asking 4 samples at temperature 1 and pass@2: each item's outcome is the unbiased pass@2 of
    its own 4 samples (re-drawn here with the same seed), pass@1 beside it."""
    from posttrain.generation import generate, load
    from posttrain.stages.eval import score_model

    def has_a_digit(rows, completions):
        return [1.0 if any(ch.isdigit() for ch in c) else 0.0 for c in completions]

    protocol = Protocol(0, False, True, False, "whole", "has a digit", temperature=1.0, samples=4, k=2)
    benchmark = dataclasses.replace(BENCHMARKS["arithmetic"], score=has_a_digit, protocol=protocol)
    monkeypatch.setitem(BENCHMARKS, "arithmetic", benchmark)
    rows = [{"messages": [{"role": "user", "content": f"What is {i} + {i}?"}]} for i in range(12)]
    recipe = micro_recipe.override(eval={"protocol_sampling": True, "max_new_tokens": 8})
    result = score_model(recipe, tiny_model, {"arithmetic": rows})["arithmetic"]

    model, tokenizer = load(str(tiny_model))
    samples = generate(model, tokenizer, [r["messages"] for r in rows], 8, recipe.eval.batch_size, num_samples=4,
                       temperature=1.0, seed=recipe.data.seed, max_prompt_tokens=recipe.eval.max_prompt_tokens)
    passes = [int(sum(has_a_digit(None, s))) for s in samples]
    assert result["outcomes"] == [pass_at_k(4, c, 2) for c in passes]
    assert result["metrics"]["pass@1"]["score"] == pytest.approx(sum(passes) / 48)
    assert 0 < sum(passes) < 48  # some samples pass, some do not: the estimator is exercised


def test_gaps_pair_each_stage_with_its_baseline_and_the_report_shows_them():
    items = [{"messages": [{"role": "user", "content": "q"}]}] * 40
    results = {"gsm8k": {"sft": record(items, [1.0] * 30 + [0.0] * 10, ["a"] * 40),
                         "rlvr": record(items, [1.0] * 36 + [0.0] * 4, ["a"] * 40),
                         "tulu3-8b-sft": record(items, [1.0] * 20 + [0.0] * 20, ["a"] * 40),
                         "tulu3-8b": record(items, [1.0] * 36 + [0.0] * 4, ["a"] * 40)}}
    found = gaps(results, [("sft", "tulu3-8b-sft"), ("rlvr", "tulu3-8b")])["gsm8k"]
    assert [(g["model"], g["baseline"]) for g in found] == [("sft", "tulu3-8b-sft"), ("rlvr", "tulu3-8b")]
    assert found[0]["gap"] == pytest.approx(0.25) and found[0]["ci95"][0] > 0  # 10 items better, none worse
    assert found[1]["gap"] == 0 and found[1]["ci95"] == [0.0, 0.0]  # the same outcomes on every item
    report = {"recipe": "x", "recipe_sha256": "0" * 64, "candidate": "rlvr", "models": list(results["gsm8k"]),
              "benchmarks": results, "gate": {"passed": True, "checks": []},
              "baselines": {"tulu3-8b-sft": "allenai/Llama-3.1-Tulu-3-8B-SFT", "tulu3-8b": "allenai/Llama-3.1-Tulu-3-8B"},
              "gaps": {"gsm8k": found}}
    markdown = render_markdown(report)
    assert "| gsm8k | sft | tulu3-8b-sft | +25.0% | [+" in markdown and "`allenai/Llama-3.1-Tulu-3-8B-SFT`" in markdown
    html = render_html(report)
    assert "<td>sft</td><td>tulu3-8b-sft</td><td>+25.0%</td>" in html and "<th>tulu3-8b</th>" in html
