"""Every training set from sources alone: no synthesis, no arithmetic; `kind: preference` sources are pairs
that DPO trains on."""
import pytest
from tulu3_fixtures import preference_rows, rlvr_rows, sft_rows, write_jsonl

from posttrain.recipe import loads
from posttrain.stages import base, data, dpo, preference
from posttrain.store import read_jsonl

RECIPE = """
name: sources-only
data:
  sft_rows: 0
  preference_prompts: 0
  rlvr_prompts: 0
  heldout_rows: 0
  decontamination: {{eval_sets: [humaneval]}}
  sources:
    - {{name: sft-mix, path: {sft}, kind: sft, fraction: 1.0}}
    - {{name: pref-mix, path: {pref}, kind: preference, fraction: 1.0}}
    - {{name: rlvr-mix, path: {rlvr}, kind: rlvr, fraction: 1.0}}
dpo: {{batch_size: 8, max_length: 192}}
eval: {{benchmarks: [humaneval]}}
preference: {{heldout_fraction: 0.25}}
"""


@pytest.fixture
def source_recipe(tmp_path):
    paths = {"sft": write_jsonl(tmp_path / "sft.jsonl", sft_rows(32)),
             "pref": write_jsonl(tmp_path / "pref.jsonl", preference_rows(32)),
             "rlvr": write_jsonl(tmp_path / "rlvr.jsonl", rlvr_rows(30))}
    return loads(RECIPE.format(**paths))


def test_a_source_only_recipe_writes_only_source_rows(source_recipe, tmp_path):
    report = data.run(source_recipe, tmp_path / "data")
    assert report["rows"] == {"heldout": 0, "heldout_ifeval": 0, "sft": 32, "preference": 0, "rlvr": 30,
                              "preference_pairs": 32}
    assert not any(report["synthesis"]["generated"].values())  # nothing synthesised, no arithmetic
    pairs = read_jsonl(tmp_path / "data" / data.FILES["preference_pairs"])
    assert {p["source"] for p in pairs} == {"pref-mix"} and all(p["chosen"] and p["rejected"] for p in pairs)
    assert {r["dataset"] for r in read_jsonl(tmp_path / "data" / data.FILES["rlvr"])} == {"gsm8k", "MATH", "ifeval"}


def test_preference_source_pairs_reach_dpo(source_recipe, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    source_recipe = source_recipe.override(model={"tiny": {"hidden_size": 32, "num_layers": 1, "num_heads": 2,
                                                           "intermediate_size": 64, "vocab_size": 320}})
    data.run(source_recipe, tmp_path / "data")
    base.run(source_recipe, tmp_path / "data", tmp_path / "policy")
    report = preference.run(source_recipe, tmp_path / "policy", tmp_path / "data", tmp_path / "pairs")
    assert report["prompts"] == 0 and report["by_origin"] == {"source": 32}  # no sampling: pairs from the source
    assert report["pairs"] == 24 and report["heldout_pairs"] == 8
    summary = dpo.run(source_recipe, tmp_path / "policy", tmp_path / "pairs", tmp_path / "dpo")
    assert summary["pairs"] == 24 and summary["pairs_by_origin"] == {"source": 24} and summary["steps"] == 3


def test_preference_pairs_may_reuse_sft_prompts_when_sets_are_deduplicated_apart(tmp_path):
    sft = sft_rows(8)
    pairs = preference_rows(8)
    for pair, row in zip(pairs[:4], sft):  # Tülu 3's on-policy pairs reuse SFT prompts
        pair["chosen"][0] = pair["rejected"][0] = row["messages"][0] if row["messages"][0]["role"] == "user" else \
            row["messages"][1]
    paths = {"sft": write_jsonl(tmp_path / "sft.jsonl", sft), "pref": write_jsonl(tmp_path / "pref.jsonl", pairs),
             "rlvr": write_jsonl(tmp_path / "rlvr.jsonl", rlvr_rows(6))}
    recipe = loads(RECIPE.format(**paths))
    assert data.run(recipe, tmp_path / "across")["rows"]["preference_pairs"] == 4  # the default drops them
    apart = recipe.override(data={"dedup_across_sets": False, "near_duplicate_threshold": 1.0})  # as tulu3-8b
    assert data.run(apart, tmp_path / "apart")["rows"]["preference_pairs"] == 8


def test_arithmetic_benchmark_without_heldout_rows_is_refused():
    from posttrain.recipe import RecipeError, Recipe

    with pytest.raises(RecipeError, match="recipe.data.heldout_rows: 0, but eval.benchmarks has arithmetic"):
        Recipe(name="r").override(data={"heldout_rows": 0})
