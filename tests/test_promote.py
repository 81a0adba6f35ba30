import json

import pytest

from posttrain import registry
from posttrain.recipe import Recipe
from posttrain.stages import promote
from posttrain.store import seal, write_json


def _model(score: float, n: int = 100) -> dict:
    right = round(score * n)
    return {"score": right / n, "n": n, "ci95": [score - 0.05, score + 0.05], "languages": {}, "samples": [],
            "outcomes": [1.0] * right + [0.0] * (n - right)}


def _scores(base: float, candidate: float, promoted: float | None = None) -> dict:
    models = {"base": _model(base), "sft": _model(candidate)}
    if promoted is not None:
        models = {"promoted": _model(promoted), **models}
    return {"candidate": "sft", "baseline": "base", "promoted": "promoted" if promoted is not None else None,
            "models": list(models), "benchmarks": {"arithmetic": models}}


RECIPE = Recipe(name="t").override(promote={"min_accuracy": {"arithmetic": 0.5}, "min_gain_over_base": 0.1,
                                            "model_registry": "none"})  # the store alone; test_tracking: MLflow


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


def test_gate_refuses_a_regression_beyond_the_interval_naming_the_benchmark():
    decision = promote.gate(RECIPE, _scores(0.1, 0.70, promoted=0.80))
    assert not decision["passed"]
    [reason] = decision["reasons"]
    assert reason.startswith("arithmetic: sft -0.100 against the promoted model (95% interval [")


def test_gate_accepts_a_drop_within_noise():
    assert promote.gate(RECIPE, _scores(0.1, 0.78, promoted=0.80))["passed"]


def _stage_dirs(tmp_path, candidate: float, weights: bytes = b"w1"):
    tmp_path = tmp_path / weights.decode()
    model_dir, eval_dir, report_dir = (tmp_path / name for name in ("model", "eval", "report"))
    model_dir.mkdir(parents=True)
    (model_dir / "model.safetensors").write_bytes(weights)
    seal(model_dir, "sft", RECIPE.digest())
    eval_dir.mkdir(parents=True)
    write_json(eval_dir / "scores.json", _scores(0.1, candidate))
    seal(eval_dir, "eval", RECIPE.digest())
    promote.decide(RECIPE, eval_dir, report_dir)
    return model_dir, report_dir


def _tree(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_two_promotions_leave_the_first_untouched_and_a_rerun_is_idempotent(tmp_path):
    registry_dir = tmp_path / "registry"
    model_dir, report_dir = _stage_dirs(tmp_path, 0.7)
    first = promote.register(RECIPE, model_dir, report_dir, registry_dir.as_uri())
    first_dir = registry_dir / "t" / first.rsplit("/", 1)[1]
    before = _tree(first_dir)
    entry = json.loads((first_dir / "entry.json").read_text())
    assert entry["scores"] == {"arithmetic": 0.7} and entry["recipe"]["name"] == "t"
    assert (first_dir / "model" / "model.safetensors").read_bytes() == b"w1"

    model_2, report_2 = _stage_dirs(tmp_path, 0.75, weights=b"w2")
    second = promote.register(RECIPE, model_2, report_2, registry_dir.as_uri())
    assert second != first and _tree(first_dir) == before

    assert promote.register(RECIPE, model_dir, report_dir, registry_dir.as_uri()) == first  # same model: no-op
    assert len(list(registry_dir.rglob("entry.json"))) == 2 and _tree(first_dir) == before
    assert {e["url"] for e in registry.entries(registry_dir.as_uri(), "t")} == {first, second}


def test_an_attempt_to_overwrite_an_entry_is_refused(tmp_path):
    registry_dir = tmp_path / "registry"
    model_dir, report_dir = _stage_dirs(tmp_path, 0.7)
    url = promote.register(RECIPE, model_dir, report_dir, registry_dir.as_uri())
    entry = registry.show(registry_dir.as_uri(), "t", url.rsplit("/", 1)[1])
    before = _tree(registry_dir)
    with pytest.raises(registry.RegistryError, match="never overwritten"):
        registry.create(registry_dir.as_uri(), "t", entry["version"], {"model/model.safetensors": model_dir / "model.safetensors"},
                        {**entry, "model_sha256": "another-model"})
    assert _tree(registry_dir) == before


def test_an_interrupted_promotion_is_not_an_entry(tmp_path):
    (tmp_path / "registry" / "t" / "abc" / "model").mkdir(parents=True)
    assert registry.entries((tmp_path / "registry").as_uri()) == []


def test_register_refuses_a_report_the_gate_refused(tmp_path):
    model_dir, report_dir = _stage_dirs(tmp_path, 0.2)
    with pytest.raises(RuntimeError, match="refused by the gate: arithmetic: sft scored 0.200"):
        promote.register(RECIPE, model_dir, report_dir, (tmp_path / "registry").as_uri())


def test_markdown_report_shows_scores_and_decision(tmp_path):
    _, report_dir = _stage_dirs(tmp_path, 0.7)
    text = (report_dir / "report.md").read_text()
    assert "| arithmetic | 100 | 10.0% [5.0%, 15.0%] | 70.0% [65.0%, 75.0%] |" in text
    assert "## Gate: PASS" in text


@pytest.mark.parametrize("store", ["file", "s3"])
def test_registry_on_file_and_s3_is_create_only(store, tmp_path, request):
    if store == "s3":
        request.getfixturevalue("s3")
        url = "s3://posttrain/registry"
    else:
        url = (tmp_path / "registry").as_uri()
    model_dir, report_dir = _stage_dirs(tmp_path, 0.7)
    first = promote.register(RECIPE, model_dir, report_dir, url)
    assert promote.register(RECIPE, model_dir, report_dir, url) == first
    [entry] = registry.entries(url, "t")
    assert entry["url"] == first and entry["scores"] == {"arithmetic": 0.7}
    fetched = registry.fetch_model(entry, tmp_path / "fetched")
    assert (fetched / "model.safetensors").read_bytes() == b"w1"
    with pytest.raises(registry.RegistryError, match="never overwritten"):
        registry.create(url, "t", entry["version"], {}, {**entry, "model_sha256": "other"})
