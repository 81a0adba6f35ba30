import json

import pytest

from posttrain.recipe import Recipe
from posttrain.stages import promote
from posttrain.store import seal, write_json


def _scores(base: float, candidate: float, n: int = 100) -> dict:
    def model(score):
        return {"score": score, "n": n, "ci95": [score - 0.05, score + 0.05], "languages": {}, "samples": []}

    return {"candidate": "sft", "models": ["base", "sft"],
            "benchmarks": {"arithmetic": {"base": model(base), "sft": model(candidate)}}}


RECIPE = Recipe(name="t").override(promote={"min_accuracy": {"arithmetic": 0.5}, "min_gain_over_base": 0.1})


def test_gate_passes_when_every_check_holds():
    decision = promote.gate(RECIPE, _scores(0.1, 0.7))
    assert decision["passed"] and decision["reasons"] == [] and len(decision["checks"]) == 2


def test_gate_names_each_failed_check():
    decision = promote.gate(RECIPE, _scores(0.45, 0.48))
    assert not decision["passed"]
    assert decision["reasons"] == ["arithmetic: sft scored 0.480, minimum 0.500",
                                   "arithmetic: sft +0.030 over base, minimum +0.100"]


def test_gate_refuses_a_required_benchmark_that_was_not_evaluated():
    recipe = RECIPE.override(promote={"min_accuracy": {"arithmetic": 0.5, "gsm8k": 0.2}})
    decision = promote.gate(recipe, _scores(0.1, 0.7))
    assert decision["reasons"] == ["gsm8k: required by recipe.promote.min_accuracy but not evaluated"]


def _stage_dirs(tmp_path, candidate: float, weights: bytes = b"w1"):
    model_dir, eval_dir, report_dir = (tmp_path / name for name in ("model", "eval", "report"))
    model_dir.mkdir()
    (model_dir / "model.safetensors").write_bytes(weights)
    seal(model_dir, "sft", RECIPE.digest())
    eval_dir.mkdir()
    write_json(eval_dir / "scores.json", _scores(0.1, candidate))
    seal(eval_dir, "eval", RECIPE.digest())
    promote.decide(RECIPE, eval_dir, report_dir)
    return model_dir, report_dir


def test_register_is_create_only_and_idempotent(tmp_path):
    registry = (tmp_path / "registry").as_uri()
    model_dir, report_dir = _stage_dirs(tmp_path, 0.7)
    first = promote.register(RECIPE, model_dir, report_dir, registry)
    entry = json.loads((tmp_path / "registry" / "t" / first.rsplit("/", 1)[1] / "entry.json").read_text())
    assert entry["scores"] == {"arithmetic": 0.7} and entry["recipe"]["name"] == "t"
    assert promote.register(RECIPE, model_dir, report_dir, registry) == first  # same model: no-op
    assert len(list((tmp_path / "registry").rglob("entry.json"))) == 1


def test_register_refuses_a_report_the_gate_refused(tmp_path):
    model_dir, report_dir = _stage_dirs(tmp_path, 0.2)
    with pytest.raises(RuntimeError, match="refused by the gate: arithmetic: sft scored 0.200"):
        promote.register(RECIPE, model_dir, report_dir, (tmp_path / "registry").as_uri())


def test_markdown_report_shows_scores_and_decision(tmp_path):
    _, report_dir = _stage_dirs(tmp_path, 0.7)
    text = (report_dir / "report.md").read_text()
    assert "| arithmetic | 100 | 10.0% [5.0%, 15.0%] | 70.0% [65.0%, 75.0%] |" in text
    assert "## Gate: PASS" in text
