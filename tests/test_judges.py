"""Each judge turns completions into valid Tülu preference pairs; the LLM judge against a local server."""
import json
import random

import pytest

from posttrain import judges
from posttrain.data.formats import problems as format_problems
from posttrain.stages.preference import judge_pairs

ROW = {"messages": [{"role": "user", "content": "Ada has 12 loaves and gets 30 more. How many?"}],
       "ground_truth": "42", "dataset": "arithmetic"}


def _assert_valid(pairs):
    assert pairs
    for pair in pairs:
        assert format_problems(pair, "preference") == []
        assert pair["chosen_score"] > pair["rejected_score"]
        assert pair["chosen"][:-1] == pair["rejected"][:-1] == ROW["messages"]


def test_verifier_judge_pairs_right_over_wrong_and_skips_no_contrast():
    completions = [["The answer is 42.", "The answer is 41."], ["The answer is 42.", "42"]]
    pairs, skipped = judge_pairs(judges.verifier_judge, [ROW, ROW], completions, random.Random(0))
    _assert_valid(pairs)
    assert skipped == 1 and pairs[0]["chosen"][-1]["content"] == "The answer is 42."


def test_reward_model_judge_scores_with_a_sequence_classifier(tmp_path):
    from posttrain.models.tiny import build
    from posttrain.recipe import TinyModel

    build([ROW["messages"][0]["content"], "The answer is 42."], TinyModel(hidden_size=32, num_layers=1, num_heads=2,
                                                                          intermediate_size=64, vocab_size=320), tmp_path)
    judge = judges.RewardModelJudge(str(tmp_path))
    scores = judge(ROW, ["The answer is 42.", "no idea", "The answer is 41."])
    assert len(scores) == 3 and len(set(scores)) == 3
    pairs, _ = judge_pairs(judge, [ROW], [["The answer is 42.", "no idea"]], random.Random(0))
    _assert_valid(pairs)


def test_llm_judge_rates_with_the_rubric_retries_and_skips_unparsable(chat_server):
    garbage = []

    def answer(body):
        if len(chat_server.bodies) == 1:  # the first call fails: the judge must retry
            return 503
        graded = body["messages"][0]["content"].rsplit("# Answer to grade\n", 1)[1]
        if "garbage" in graded:
            garbage.append(graded)
            return "I would rather not say."
        return "Sure: " + json.dumps({a: 5 if "good" in graded else 2 for a in judges.ASPECTS})

    judge = judges.LLMJudge(chat_server.start(answer), "judge-model", parse_retries=2, backoff_s=0.01, concurrency=1)
    completions = [["a good answer", "a weak answer", "garbage"], ["garbage", "garbage too"]]
    pairs, skipped = judge_pairs(judge, [ROW, ROW], completions, random.Random(0))
    _assert_valid(pairs)
    assert pairs[0]["chosen"][-1]["content"] == "a good answer" and pairs[0]["chosen_score"] == 5.0
    assert skipped == 1  # the second prompt had nothing parsable
    assert judge.unparsable == 3 and len(garbage) == 3 * 3  # each tried 1 + 2 times


def test_parse_ratings_rejects_out_of_range_and_missing_aspects():
    assert judges.parse_ratings(json.dumps({a: 4 for a in judges.ASPECTS})) == 4.0
    assert judges.parse_ratings(json.dumps({a: 9 for a in judges.ASPECTS})) is None
    assert judges.parse_ratings('{"helpfulness": 3}') is None
    assert judges.parse_ratings("no json") is None
