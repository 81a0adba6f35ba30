"""Each judge turns completions into valid Tülu preference pairs; the LLM judge against a local server."""
import json
import random
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from posttrain import judges
from posttrain.data.formats import problems as format_problems
from posttrain.stages.preference import judge_pairs

from conftest import reply_json

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


@pytest.fixture
def openai_server():
    calls = {"n": 0, "garbage": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            calls["n"] += 1
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = body["messages"][0]["content"]
            if calls["n"] == 1:  # the first call fails: the judge must retry
                self.send_response(503)
                self.end_headers()
                return
            answer = prompt.rsplit("# Answer to grade\n", 1)[1]
            if "garbage" in answer:
                calls["garbage"] += 1
                content = "I would rather not say."
            else:
                level = 5 if "good" in answer else 2
                content = "Sure: " + json.dumps({a: level for a in judges.ASPECTS})
            reply_json(self, {"choices": [{"message": {"role": "assistant", "content": content}}]})

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1", calls
    server.shutdown()


def test_llm_judge_rates_with_the_rubric_retries_and_skips_unparsable(openai_server):
    url, calls = openai_server
    judge = judges.LLMJudge(url, "judge-model", parse_retries=2, backoff_s=0.01, concurrency=1)
    completions = [["a good answer", "a weak answer", "garbage"], ["garbage", "garbage too"]]
    pairs, skipped = judge_pairs(judge, [ROW, ROW], completions, random.Random(0))
    _assert_valid(pairs)
    assert pairs[0]["chosen"][-1]["content"] == "a good answer" and pairs[0]["chosen_score"] == 5.0
    assert skipped == 1  # the second prompt had nothing parsable
    assert judge.unparsable == 3 and calls["garbage"] == 3 * 3  # each tried 1 + 2 times


def test_parse_ratings_rejects_out_of_range_and_missing_aspects():
    assert judges.parse_ratings(json.dumps({a: 4 for a in judges.ASPECTS})) == 4.0
    assert judges.parse_ratings(json.dumps({a: 9 for a in judges.ASPECTS})) is None
    assert judges.parse_ratings('{"helpfulness": 3}') is None
    assert judges.parse_ratings("no json") is None
