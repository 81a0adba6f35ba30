import pytest

from posttrain.verifiers import final_number, number_reward, verify


@pytest.mark.parametrize("text, expected", [
    ("7+5+0=12, 4+8+1=13. The answer is 132.", "132"),
    ("La risposta è 1,234.", "1234"),
    ("it is -17", "-17"),
    ("no number here", None),
])
def test_final_number(text, expected):
    got = final_number(text)
    assert (str(got) if got is not None else None) == expected


def test_number_reward_right_and_wrong():
    assert number_reward(["The answer is 919.", "The answer is 918.", "919 then 3"], ground_truth=["919"] * 3) == \
        [1.0, 0.0, 0.0]


def test_verify_dispatches_on_dataset_and_rejects_unknown():
    assert verify(["x = 4"], dataset=["gsm8k"], ground_truth=["4"]) == [1.0]
    with pytest.raises(KeyError, match="no verifier for dataset 'chess'"):
        verify(["x"], dataset=["chess"], ground_truth=["1"])
