import random
import string

from posttrain.data.arithmetic import problems
from posttrain.data.decontaminate import EvalIndex, decontaminate
from posttrain.evals import humaneval
from posttrain.stages import data


def _sft(text: str) -> dict:
    return {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}]}


def _disguise(text: str, rng: random.Random) -> str:
    """Change case, whitespace and punctuation, keeping the words."""
    words = text.split()
    out = []
    for word in words:
        word = word.upper() if rng.random() < 0.5 else word.lower()
        out.append(word + rng.choice(["", ",", " ;", "!!", ""]))
    return rng.choice(["  ", "\n", "\t "]).join(out) + rng.choice(string.punctuation)


def test_planted_eval_items_are_removed_verbatim_and_disguised():
    rng = random.Random(0)
    items = [p["prompt"] for p in humaneval.problems()[:20]]
    index = EvalIndex(n=8)
    index.add("humaneval", items)
    clean = [_sft(r["messages"][0]["content"]) for r in problems(1, 500, 3, ["add", "sub"], ["en", "de"])]
    planted = [_sft(item) for item in items[:10]] + [_sft(_disguise(item, rng)) for item in items[10:]]
    planted += [_sft("Some preamble. " + items[3] + " And more words after it.")]
    kept, report = decontaminate(clean + planted, index, threshold=0.5)
    assert kept == clean
    assert report["rows_removed"] == len(planted)
    assert report["by_eval_set"]["humaneval"]["eval_items_hit"] == 20
    assert report["by_eval_set"]["humaneval"]["examples"][0]["row"] == len(clean)


def test_short_eval_items_match_exactly_only():
    index = EvalIndex(n=8)
    index.add("tiny", ["What is 2 + 2?"])
    kept, report = decontaminate([_sft("what is 2+2"), _sft("what is 3 + 2?")], index)
    assert [r["messages"][0]["content"] for r in kept] == ["what is 3 + 2?"] and report["rows_removed"] == 1


def test_data_stage_loses_no_clean_rows_and_reports_per_split(tmp_path, micro_recipe):
    report = data.run(micro_recipe, tmp_path)
    for split in ("sft", "preference", "rlvr"):
        assert report["decontamination"][split]["rows_removed"] == 0
        assert report["decontamination"][split]["rows_scanned"] == report["rows"][split]


def test_data_stage_fails_when_told_to_and_a_split_is_contaminated(tmp_path, micro_recipe, monkeypatch):
    import pytest

    recipe = micro_recipe.override(data={"decontamination": {"action": "fail", "threshold": 0.0, "n": 1}})
    with pytest.raises(ValueError, match=r"data: sft is contaminated: \d+ of 76 rows overlap eval sets"):
        data.run(recipe, tmp_path)


def test_near_duplicates_go_and_distinct_rows_stay():
    from posttrain.data.dedup import near_duplicates

    texts = ["Ada has 12 apples and buys 3 more apples at the market today.",
             "Bruno sorts returned books in the library every single evening.",
             "ada has 12 apples, and buys 3 more apples at the market today!",
             "Ada has 12 apples and buys 3 more apples at the market tomorrow."]
    assert near_duplicates(texts, threshold=0.8) == [2]
    assert near_duplicates(texts, threshold=0.5) == [2, 3]


def test_data_stage_reports_exact_and_near_duplicates(tmp_path, micro_recipe):
    report = data.run(micro_recipe, tmp_path)
    assert set(report["duplicates_dropped"]) == {"exact", "near", "by_group"}
    assert sum(report["rows"].values()) == 64 + 16 + 16 + 16 + (8 + 4 + 4 + 8)  # + the synthesis families
