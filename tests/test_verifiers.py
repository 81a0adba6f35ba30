import pytest

from posttrain.verifiers import final_number, number_reward, verify

pytestmark = pytest.mark.slow  # a module of a minute or more: handed out first (conftest.py)


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


@pytest.mark.parametrize("answer, truth, expected", [
    (r"so the answer is $\boxed{0.5}$", r"\frac{1}{2}", 1.0),
    (r"$x = \frac{1}{2}$", "0.5", 1.0),
    (r"\boxed{\sqrt{4}}", "2", 1.0),
    (r"\boxed{3}", "4", 0.0),
    ("no answer at all", "4", 0.0),
])
def test_math_verifier_equivalences(answer, truth, expected):
    assert verify([answer], dataset=["math"], ground_truth=[truth]) == [expected]


def test_code_verifier_passes_right_code_and_fails_wrong_code():
    assert verify(["def f(x):\n    return x * 2", "def f(x):\n    return x + 2"], dataset=["code"] * 2,
                  ground_truth=["assert f(3) == 6"] * 2) == [1.0, 0.0]


def test_code_sandbox_stops_endless_loops_and_unbounded_memory():
    import time

    from posttrain.verifiers.code import run_program

    start = time.monotonic()
    assert run_program("while True:\n    pass\n", timeout_s=1.0) is False
    assert run_program("x = []\nwhile True:\n    x.append(bytearray(10**7))\n", timeout_s=5.0) is False  # 1 GB default
    assert time.monotonic() - start < 8


def test_code_sandbox_has_no_network_and_a_private_directory():
    from posttrain.verifiers.code import run_program

    probe = "import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('1.1.1.1', 80))\n"
    assert run_program(probe, timeout_s=3.0) is False
    assert run_program("import os\nassert os.listdir('.') == ['program.py']\n", timeout_s=3.0) is True


def test_humaneval_canonical_solutions_pass_and_empty_ones_fail():
    from posttrain.evals import humaneval

    items = humaneval.problems()
    assert len(items) == 164
    score, _ = humaneval.pass_at_1(items, [p["canonical_solution"] for p in items])
    assert score == 1.0
    score, outcomes = humaneval.pass_at_1(items, [""] * len(items), timeout_s=5.0)
    assert score == 0.0 and len(outcomes) == 164


def test_multiple_choice_reads_the_stated_letter():
    from posttrain.verifiers import verify

    completions = ["Between B and C, the answer is C.", "I think it is (A)", "the answer is: d", "I agree."]
    assert verify(completions, dataset=["multiple_choice"] * 4, ground_truth=["C", "A", "D", "I"]) == [1, 1, 1, 0]
