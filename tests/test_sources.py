"""Mixing sources: exact and seeded amounts, quarantine with row numbers, s3:// through moto's server."""
import json

import pytest

from posttrain.data.sources import SourceError, mix
from posttrain.recipe import Source
from posttrain.stages import data
from posttrain.store import read_jsonl


def _sft_rows(n, start=0):
    return [{"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}]}
            for i in range(start, start + n)]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_fraction_and_count_are_exact_and_seed_deterministic(tmp_path):
    a = _write_jsonl(tmp_path / "a.jsonl", _sft_rows(200))
    import pyarrow as pa
    import pyarrow.parquet as pq

    renamed = [{"conversation": r["messages"]} for r in _sft_rows(50, start=1000)]
    pq.write_table(pa.Table.from_pylist(renamed), tmp_path / "b.parquet")
    sources = [Source(name="a", path=a, fraction=0.25),
               Source(name="b", path=str(tmp_path / "b.parquet"), rows=7, columns={"conversation": "messages"})]
    mixed, quarantine, counts = mix(sources, seed=3, max_quarantine_fraction=0.0, max_chars=10_000)
    assert counts == {"a": {"read": 200, "valid": 200, "quarantined": 0, "taken": 50},
                      "b": {"read": 50, "valid": 50, "quarantined": 0, "taken": 7}}
    assert len(mixed["sft"]) == 57 and quarantine == []
    again, _, _ = mix(sources, seed=3, max_quarantine_fraction=0.0, max_chars=10_000)
    other, _, _ = mix(sources, seed=4, max_quarantine_fraction=0.0, max_chars=10_000)
    assert again == mixed and other != mixed


def test_bad_rows_are_quarantined_with_row_numbers_and_the_limit_names_the_source(tmp_path):
    rows = _sft_rows(20)
    rows[4] = {"messages": [{"role": "robot", "content": "hi"}]}
    rows[9] = {"messages": []}
    path = tmp_path / "bad.jsonl"
    _write_jsonl(path, rows)
    with open(path, "a") as handle:
        handle.write("{not json\n")
    source = Source(name="web", path=str(path), rows=5)
    _, quarantine, counts = mix([source], seed=0, max_quarantine_fraction=0.2, max_chars=10_000)
    assert [(q["source"], q["row"]) for q in quarantine] == [("web", 5), ("web", 10), ("web", 21)]
    assert "messages[0].role" in quarantine[0]["reason"] and "not valid JSON" in quarantine[2]["reason"]
    assert counts["web"]["taken"] == 5
    with pytest.raises(SourceError, match=r"source web \(.*bad.jsonl\): 3 of 21 rows invalid .* first: row 5"):
        mix([source], seed=0, max_quarantine_fraction=0.1, max_chars=10_000)


def test_missing_file_and_too_many_rows_are_clear(tmp_path):
    with pytest.raises(SourceError, match="nope.jsonl: no such file"):
        mix([Source(name="x", path=str(tmp_path / "nope.jsonl"), rows=1)], 0, 0.0, 10_000)
    path = _write_jsonl(tmp_path / "few.jsonl", _sft_rows(3))
    with pytest.raises(SourceError, match="source x: asked for 5 rows, only 3 valid"):
        mix([Source(name="x", path=path, rows=5)], 0, 0.0, 10_000)


def test_a_source_needs_exactly_one_amount():
    from posttrain.recipe import RecipeError, Recipe

    with pytest.raises(RecipeError, match="give exactly one of fraction or rows"):
        Recipe(name="r").override(data={"sources": [{"name": "x", "path": "a.jsonl"}]})


def test_a_source_on_s3_is_read_through_moto_and_mixed_by_the_data_stage(s3, tmp_path, micro_recipe):
    import fsspec

    with fsspec.open("s3://posttrain/mix/extra.jsonl", "w") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in _sft_rows(30, start=500)))
    recipe = micro_recipe.override(data={"sources": [{"name": "extra", "path": "s3://posttrain/mix/extra.jsonl",
                                                      "rows": 10}]})
    report = data.run(recipe, tmp_path)
    assert report["sources"]["extra"] == {"read": 30, "valid": 30, "quarantined": 0, "taken": 10, "duplicates": 0}
    sft = read_jsonl(tmp_path / data.FILES["sft"])
    assert len(sft) == 64 + 8 + 4 + 10 and sum(r["messages"][0]["content"].startswith("question") for r in sft) == 10
