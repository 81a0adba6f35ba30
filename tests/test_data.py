import random
import re

import pytest

from posttrain.data.arithmetic import ANSWER, QUESTIONS, problem, scratchpad
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
        assert _replay(scratchpad(a, b, operation), operation) == (a + b if operation == "add" else a - b)


def test_scratchpad_writes_borrows():
    assert scratchpad(502, 7, "sub") == "12-7-0=5, 10-0-1=9, 5-0-1=4"
    assert scratchpad(958, 67, "add") == "8+7+0=15, 5+6+1=12, 9+0+1=10"


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
