"""The report's rows, rendered as markdown and as HTML: both say how the scores were drawn, and a model's
answer that is not text shows as escaped bytes."""
import dataclasses
import json

import pytest

from posttrain.evals import BENCHMARKS
from posttrain.evals.protocol import Protocol
from posttrain.evals.records import record
from posttrain.reporting import rows
from posttrain.reporting.report import render_html, render_markdown


def _report(results: dict) -> dict:
    return {"recipe": "x", "recipe_sha256": "0" * 64, "candidate": "tiny", "models": ["tiny"],
            "benchmarks": results, "gate": {"passed": True, "checks": []}}


@pytest.fixture
def tiny_model(tmp_path, micro_recipe):
    from posttrain.models import tiny

    tiny.build(["The answer is 12.", "abc def", "x = 1 + 2"] * 20, micro_recipe.model.tiny, tmp_path / "m")
    return tmp_path / "m"


def test_the_reports_say_greedy_only_when_the_eval_stage_decoded_greedily(tiny_model, micro_recipe, monkeypatch):
    """The same benchmark scored by the eval stage with `eval.protocol_sampling` off, then on (its protocol asks
    4 samples at temperature 1, pass@2): the heading says what ran, in both renderings."""
    from posttrain.stages.eval import score_model

    protocol = Protocol(0, False, True, False, "whole", "has a digit", temperature=1.0, samples=4, k=2)
    monkeypatch.setitem(BENCHMARKS, "arithmetic", dataclasses.replace(BENCHMARKS["arithmetic"], protocol=protocol))
    suites = {"arithmetic": [{"messages": [{"role": "user", "content": f"What is {i} + {i}?"}], "ground_truth": str(2 * i),
                              "dataset": "arithmetic"}
                             for i in range(4)]}
    for sampling, said in ((False, "Held-out, greedy;"), (True, "Held-out, arithmetic: 4 samples at temperature 1, pass@2;")):
        recipe = micro_recipe.override(eval={"protocol_sampling": sampling, "max_new_tokens": 4})
        report = _report({"arithmetic": {"tiny": score_model(recipe, tiny_model, suites)["arithmetic"]}})
        markdown, page = render_markdown(report), render_html(report)
        assert said in markdown and said in page
        assert ("greedy" in markdown) is not sampling and ("greedy" in page) is not sampling


def test_an_answer_that_is_not_text_shows_as_escaped_bytes(tmp_path):
    """Bytes that were not UTF-8 (kept by surrogateescape), control characters and U+FFFD in a completion:
    the page shows their escapes, writes as UTF-8, and keeps the text around them; newlines stay."""
    completion = b"ok \x9f\xff end".decode("utf-8", "surrogateescape") + "\x00\x1b[2J\ufffd\nnext line"
    items = [{"messages": [{"role": "user", "content": "say \x07 something"}]}]
    stored = json.loads(json.dumps(record(items, [0.0], [completion])))  # as report.json holds it
    page = render_html(_report({"arithmetic": {"tiny": stored}}))
    (tmp_path / "report.html").write_text(page)  # would raise UnicodeEncodeError on a lone surrogate
    assert r"ok \x9f\xff end\x00\x1b[2J\ufffd" + "\nnext line" in page
    assert r"say \x07 something" in page
    assert "\ufffd" not in page and "\x00" not in page and "\udc9f" not in page
    assert rows.readable("Grüße, 東京 😀\tand\n") == "Grüße, 東京 😀\tand\n"  # text stays as it is


def test_markdown_and_html_show_the_same_rows():
    """Each table's cells, from the one row model, appear in both renderings."""
    items = [{"messages": [{"role": "user", "content": "q"}], "language": lang} for lang in ("en", "de") * 5]
    results = {"gsm8k": {"sft": record(items, [1.0] * 6 + [0.0] * 4, ["a"] * 10),
                         "rlvr": record(items, [1.0] * 9 + [0.0], ["a"] * 10)}}
    report = {**_report(results), "models": ["sft", "rlvr"], "candidate": "rlvr",
              "gate": {"passed": False, "checks": [{"passed": False, "detail": "gsm8k: rlvr scored 0.900, minimum 0.950"}]},
              "stages": [{"stage": "sft", "seconds": 12.4, "summary": {"loss": 1.5}, "log": "logs/sft.log"}]}
    markdown, page = render_markdown(report), render_html(report)
    tables = [rows.score_table(report), rows.stage_table(report)]
    assert [len(t.rows) for t in tables] == [3, 1]  # gsm8k, then its two languages; one stage
    for table in tables:
        for row in table.rows:
            assert "| " + " | ".join(row) + " |" in markdown
            assert all(f">{cell}<" in page for cell in row if cell != "logs/sft.log")
    assert '<a href="logs/sft.log">logs/sft.log</a>' in page
    assert "FAIL: gsm8k: rlvr scored 0.900" in markdown and "✗ gsm8k: rlvr scored 0.900" in page
