import json
import random
import re

import pytest

from posttrain.data.arithmetic import ANSWER, QUESTIONS, leading_carry, problem, scratchpad
from posttrain.stages import data
from posttrain.store import read_jsonl, read_manifest
from posttrain.verifiers import verify


def _replay(pad: str, operation: str) -> int:
    """Rebuild the result from the scratchpad's column results alone (least significant first)."""
    columns = [int(step.split("=")[1]) for step in pad.split(", ")]
    digits, carry = [], 0
    for value in columns:
        digits.append(value % 10)
        carry = value // 10
    if operation == "add" and carry:
        digits.append(carry)
    return int("".join(map(str, reversed(digits))))


@pytest.mark.parametrize("operation", ["add", "sub"])
def test_scratchpad_columns_give_the_right_answer(operation):
    rng = random.Random(1)
    for _ in range(2000):
        a, b = sorted((rng.randint(0, 99999), rng.randint(0, 99999)), reverse=operation == "sub")
        pad, value = scratchpad(a, b, operation)
        assert _replay(pad, operation) == value == (a + b if operation == "add" else a - b)


def test_scratchpad_writes_borrows():
    assert scratchpad(502, 7, "sub") == ("12-7-0=5, 10-0-1=9, 5-0-1=4", 495)
    assert scratchpad(958, 67, "add") == ("8+7+0=15, 5+6+1=12, 9+0+1=10", 1025)


def test_a_slipping_teacher_forgets_only_the_carry_into_the_leading_column():
    assert scratchpad(347, 285, "add", slip=True) == ("7+5+0=12, 4+8+1=13, 3+2+0=5", 532)
    assert scratchpad(512, 385, "sub", slip=True) == ("12-5-0=7, 11-8-1=2, 5-3-0=2", 227)
    assert scratchpad(912, 385, "add", slip=True) == scratchpad(912, 385, "add")  # nothing to forget
    assert leading_carry(347, 285, "add") and leading_carry(512, 385, "sub") and not leading_carry(912, 385, "add")


def test_teacher_slip_makes_wrong_sft_solutions_only_where_a_leading_carry_is(micro_recipe, tmp_path):
    recipe = micro_recipe.override(data={"sft_rows": 400, "teacher_slip": 0.7})
    data.run(recipe, tmp_path)
    sft = [r for r in read_jsonl(tmp_path / "sft.jsonl") if r.get("family") == "math"]
    right = verify([r["messages"][-1]["content"] for r in sft], dataset=[r["dataset"] for r in sft],
                   ground_truth=[r["ground_truth"] for r in sft])
    carry = [leading_carry(*r["operands"], r["operation"]) for r in sft]
    assert all(ok for ok, c in zip(right, carry) if not c)  # the teacher slips nowhere else
    wrong_share = sum(1 - ok for ok, c in zip(right, carry) if c) / sum(carry)
    assert 0.6 < wrong_share < 0.8  # ~ teacher_slip, over ~180 problems with a leading carry
    assert [bool(r.get("teacher_slip")) for r in sft] == [not ok for ok in right]
    assert json.loads((tmp_path / "report.json").read_text())["teacher_slips"] == sum(1 - ok for ok in right)
    for split in ("heldout", "rlvr", "preference"):  # what the verifiers grade against stays right
        rows = read_jsonl(tmp_path / f"{split}.jsonl")
        assert all(verify([r["solution"]], dataset=[r["dataset"]], ground_truth=[r["ground_truth"]])[0]
                   for r in rows if r.get("family") == "math")


@pytest.mark.parametrize("language", sorted(QUESTIONS))
def test_every_language_problem_is_verified_by_its_own_solution(language):
    rng = random.Random(0)
    for operation in ("add", "sub"):
        row = problem(rng, 3, operation, language)
        assert row["solution"].endswith(ANSWER[language].format(n=row["ground_truth"]))
        assert verify([row["solution"]], dataset=[row["dataset"]], ground_truth=[row["ground_truth"]]) == [1.0]
        assert re.search(r"\d{3}", row["messages"][0]["content"])


def test_data_stage_splits_are_disjoint_and_in_tulu_format(tmp_path, micro_recipe):
    report = data.run(micro_recipe, tmp_path)
    splits = {name: read_jsonl(tmp_path / file) for name, file in data.FILES.items()}
    assert report["rows"] == {name: len(rows) for name, rows in splits.items()}
    prompts = {name: {r["messages"][0]["content"] for r in rows} for name, rows in splits.items()}
    for name, seen in prompts.items():
        if name != "heldout":
            assert not seen & prompts["heldout"], f"{name} shares prompts with the held-out set"
    assert all([m["role"] for m in r["messages"]] == ["user", "assistant"] for r in splits["sft"])
    assert all({"messages", "ground_truth", "dataset"} <= set(r) for r in splits["rlvr"] + splits["heldout"])
    assert set(read_manifest(tmp_path)["files"]) == {*data.FILES.values(), "report.json", "quarantine.jsonl"}


def test_data_stage_refuses_more_rows_than_distinct_problems(tmp_path, micro_recipe):
    tiny = micro_recipe.override(data={"digits": 1, "operations": ["add"], "languages": ["en"], "sft_rows": 5000})
    with pytest.raises(ValueError, match=r"recipe\.data: only \d+ distinct problems with digits=1"):
        data.run(tiny, tmp_path)


def test_a_finished_stage_is_skipped_on_rerun_and_never_overwritten(tmp_path, micro_recipe, capsys):
    first = data.run(micro_recipe, tmp_path)
    manifest = (tmp_path / "manifest.json").read_bytes()
    assert data.run(micro_recipe, tmp_path) == first
    assert "already holds this output for these inputs; skipped" in capsys.readouterr().out
    assert (tmp_path / "manifest.json").read_bytes() == manifest
    with pytest.raises(FileExistsError, match="outputs are never overwritten, use a new directory"):
        data.run(micro_recipe.override(data={"seed": 1}), tmp_path)
    assert (tmp_path / "manifest.json").read_bytes() == manifest


def test_the_tiny_tokenizer_does_not_move_with_the_data_mix(micro_recipe, tmp_path):
    from posttrain.stages import base

    files = []
    for name, change in (("a", {}), ("b", {"languages": ["de", "pt"], "digits": 4, "teacher_slip": 0.5,
                                           "synthesis": {"ifeval_rows": 0, "code_rows": 0, "rlvr_ifeval_rows": 0,
                                                         "heldout_ifeval_rows": 0}})):
        recipe = micro_recipe.override(data=change)
        data.run(recipe, tmp_path / name / "data")
        base.run(recipe, tmp_path / name / "data", tmp_path / name / "base")
        files.append((tmp_path / name / "base" / "tokenizer.json").read_text())
    assert files[0] == files[1]
