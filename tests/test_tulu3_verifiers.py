"""The verifiers score the rows of Tülu 3's RLVR mixture in its published ground-truth formats."""
import json

import pytest
from tulu3_fixtures import IF_CASES, rlvr_cases

from posttrain.verifiers import verify
from posttrain.verifiers.if_functions import FUNCTIONS, follows


@pytest.mark.parametrize("kind", ["gsm8k", "MATH", "ifeval"])
def test_right_and_wrong_completions_of_each_kind(kind):
    cases = [c for c in rlvr_cases(60) if c[0]["dataset"] == kind]
    assert len(cases) >= 5
    truths = [row["ground_truth"] for row, _, _ in cases]
    right = verify([r for _, r, _ in cases], dataset=[kind] * len(cases), ground_truth=truths)
    wrong = verify([w for _, _, w in cases], dataset=[kind] * len(cases), ground_truth=truths)
    assert right == [1.0] * len(cases), [row["ground_truth"] for (row, _, _), s in zip(cases, right) if s != 1.0]
    assert wrong == [0.0] * len(cases)


def test_every_if_case_is_one_published_function_with_all_arguments_present():
    truths = [json.loads(row["ground_truth"]) for row, _, _ in rlvr_cases(len(IF_CASES) * 3) if row["dataset"] == "ifeval"]
    assert len(truths) >= len(IF_CASES)  # the loop below checks something
    for truth in truths:
        assert truth["func_name"] in FUNCTIONS and len(truth) == 14  # func_name + 13 arguments, nulls included


def test_assistant_header_and_thinking_are_not_scored():
    truth = {"func_name": "validate_lowercase", "N": None}
    assert follows("<|user|>\nHi\n<|assistant|>\nall lower case", truth)
    assert follows("<think>I Think In Capitals</think> all lower case", truth)
    assert not follows("<|assistant|>\nNot Lower", truth)


def test_unknown_function_and_bad_arguments_are_named():
    with pytest.raises(KeyError, match="unknown func_name 'nope'"):
        follows("text", {"func_name": "nope"})
    with pytest.raises(ValueError, match="verify_keyword_frequency: bad arguments"):
        follows("text", {"func_name": "verify_keyword_frequency", "N": 2})
