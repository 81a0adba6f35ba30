"""Each benchmark states Tülu 3's protocol and follows it: the published exemplars, pass@k, IFEval loose."""
import ast
from itertools import combinations
from pathlib import Path

import pytest
import yaml

from posttrain.evals import BENCHMARKS, fewshot, ifeval, olmo
from posttrain.evals.protocol import Protocol, pass_at, pass_at_k

LM_EVAL_TASKS = Path(__import__("lm_eval").__file__).parent / "tasks"


def test_every_public_benchmark_states_its_protocol_and_how_it_differs_from_the_published_one():
    for name, benchmark in BENCHMARKS.items():
        if name == "arithmetic":  # our own held-out set: nothing published to compare with
            assert benchmark.protocol is None
            continue
        protocol = benchmark.protocol
        assert protocol.published and protocol.differences and protocol.metric, name
    assert (olmo.GSM8K.shots, olmo.MATH.shots, olmo.MMLU.shots) == (8, 4, 0)
    assert olmo.MMLU.chain_of_thought and BENCHMARKS["humaneval"].protocol.k == 10


def test_exemplars_are_the_published_ones_lm_eval_uses():
    config = yaml.safe_load((LM_EVAL_TASKS / "gsm8k" / "gsm8k-cot.yaml").read_text())
    assert [(s["question"], s["target"]) for s in config["fewshot_config"]["samples"]] == fewshot.GSM8K
    # minerva_math/utils.py refuses to import without antlr4 4.11, so read its exemplars from the source
    source = ast.parse((LM_EVAL_TASKS / "minerva_math" / "utils.py").read_text())
    [function] = [n for n in source.body if isinstance(n, ast.FunctionDef) and n.name == "list_fewshot_samples"]
    assert [(s["problem"], s["solution"]) for s in ast.literal_eval(function.body[0].value)] == fewshot.MATH


def test_gsm8k_and_math_rows_carry_their_exemplars_as_earlier_turns():
    gsm8k, math = olmo.gsm8k()[0], olmo.math500()[0]
    assert [m["role"] for m in gsm8k["messages"]] == ["user", "assistant"] * 8 + ["user"]
    assert gsm8k["messages"][-1]["content"] == f"Q: {gsm8k['question']}\nA:"
    assert gsm8k["messages"][1]["content"].endswith("The answer is 6.")
    assert [m["role"] for m in math["messages"]] == ["user", "assistant"] * 4 + ["user"]
    assert math["messages"][-1]["content"].startswith("Problem:\n") and "\\boxed{24}" in math["messages"][3]["content"]


def test_pass_at_k_is_the_unbiased_estimator():
    """Against its definition: the share of k-subsets of the n samples that hold at least one pass."""
    for n, c, k in [(5, 0, 1), (5, 2, 1), (5, 2, 3), (6, 1, 5), (6, 6, 2), (20, 3, 10)]:
        outcomes = [1] * c + [0] * (n - c)
        subsets = list(combinations(outcomes, k)) if n < 20 else None
        expected = sum(any(s) for s in subsets) / len(subsets) if subsets else 1 - (10 * 9 * 8) / (20 * 19 * 18)  # C(17,10)/C(20,10)
        assert pass_at_k(n, c, k) == pytest.approx(expected)
    assert pass_at([[1.0, 0.0], [0.0, 0.0]], 1) == [0.5, 0.0]
    with pytest.raises(ValueError, match="pass@10 needs at least 10 samples"):
        Protocol(0, False, True, False, "x", "y", temperature=0.8, samples=5, k=10)
    with pytest.raises(ValueError, match="need temperature > 0"):
        Protocol(0, False, True, False, "x", "y", samples=5)


def test_ifeval_loose_forgives_a_preamble_and_markdown_that_strict_does_not():
    row = {"ground_truth": '{"instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}]}'}
    preamble = "Sure! Here it is:\nall of this is in lowercase letters."
    assert ifeval.strict([row], [preamble]) == [0.0] and ifeval.loose([row], [preamble]) == [1.0]
    row = {"ground_truth": '{"instruction_id_list": ["detectable_format:title"], "kwargs": [{}]}'}
    assert ifeval.metrics([row], ["**<<Title>>** and text"]) == {"prompt_level_loose": [1.0],
                                                                 "prompt_level_strict": [1.0]}
    row = {"ground_truth": '{"instruction_id_list": ["startend:end_checker"], "kwargs": [{"end_phrase": "Bye."}]}'}
    assert ifeval.metrics([row], ["Text. Bye.\n**Note**: extra"]) == {"prompt_level_loose": [1.0],
                                                                      "prompt_level_strict": [0.0]}
    assert len(ifeval.variants("a\n*b*\nc")) == 8


def test_decontamination_indexes_the_test_question_not_the_few_shot_exemplars():
    """The exemplars are GSM8K training items every prompt shares; the test question is what must not leak."""
    from posttrain.recipe import Recipe
    from posttrain.stages.data import eval_index

    recipe = Recipe(name="x").override(data={"decontamination": {"eval_sets": ["gsm8k"]}})
    index = eval_index(recipe, {"heldout": [], "heldout_ifeval": []})
    test_item = olmo.gsm8k()[5]["question"]
    exemplar = fewshot.GSM8K[0][0]
    assert index.match(f"Please solve: {test_item}", 0.5) is not None
    assert index.match(f"Please solve: {exemplar}", 0.5) is None
