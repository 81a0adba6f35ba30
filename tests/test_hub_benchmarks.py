"""Tülu 3's Hub-only benchmarks (BBH, DROP, PopQA, TruthfulQA, AlpacaEval 2) load from local files in their
published schemas, exactly as they would by HF name on a cluster, and score what they should."""
import json
import math

import pytest

from conftest import ROOT
from posttrain.evals import BENCHMARKS, hub
from posttrain.recipe import Recipe

FIXTURES = ROOT / "tests" / "fixtures" / "hub"


def _rows(name):
    recipe = Recipe(name="x").override(eval={"benchmarks": [name], "hf_datasets": {name: str(FIXTURES / name)},
                                             **({"engine": "lm_eval"} if name == "truthfulqa" else {})})
    return BENCHMARKS[name].rows(recipe, FIXTURES)


def test_bbh_asks_with_each_subtasks_three_published_exemplars_and_scores_the_stated_answer():
    rows = _rows("bbh")
    assert len(rows) == 5 and {r["subtask"] for r in rows} == {"boolean_expressions", "web_of_lies"}
    assert [m["role"] for m in rows[0]["messages"]] == ["user", "assistant"] * 3 + ["user"]
    assert rows[0]["messages"][1]["content"].endswith("So the answer is False.")
    right = [f"Let me see. So the answer is {r['ground_truth']}." for r in rows]
    wrong = ["So the answer is maybe." for _ in rows]
    assert BENCHMARKS["bbh"].score(rows, right) == [1.0] * 5 and BENCHMARKS["bbh"].score(rows, wrong) == [0.0] * 5


def test_drop_is_3_shot_from_train_and_scores_token_f1_against_the_best_span():
    rows = _rows("drop")
    assert len(rows) == 2 and rows[0]["messages"][0]["content"].count("Passage:") == 4  # 3 exemplars + item
    assert BENCHMARKS["drop"].score(rows, ["John Carney\nmore text", "2500"]) == [1.0, 1.0]
    assert BENCHMARKS["drop"].score(rows, ["Carney", "3000"])[0] == pytest.approx(2 / 3)
    assert hub.token_f1("the Bears", "Bears") == 1.0  # articles and case do not count


def test_popqa_counts_any_possible_answer_in_the_reply():
    rows = _rows("popqa")
    assert BENCHMARKS["popqa"].score(rows, ["It is in France.", "Marlowe wrote it."]) == [1.0, 0.0]
    assert BENCHMARKS["popqa"].score(rows[1:], ["the bard, of course"]) == [1.0]


def test_a_missing_field_names_the_benchmark_item_and_the_published_schema(tmp_path):
    (tmp_path / "test.jsonl").write_text(json.dumps({"question": "Where is Lyon?"}) + "\n")
    with pytest.raises(ValueError, match=r"popqa item 0: fields \['possible_answers'\] missing"):
        hub.popqa(str(tmp_path))
    with pytest.raises(ValueError, match="not offline; name its dataset in recipe.eval.hf_datasets.bbh"):
        BENCHMARKS["bbh"].rows(Recipe(name="x").override(eval={"benchmarks": ["bbh"]}), tmp_path)
    with pytest.raises(ValueError, match="truthfulqa compares answer log-likelihoods; it needs engine: lm_eval"):
        Recipe(name="x").override(eval={"benchmarks": ["truthfulqa"]})


def test_truthfulqa_mc2_through_lm_eval_equals_mc2_from_our_own_forward_pass(tmp_path, micro_recipe):
    """lm-eval's 6-shot primer and log-likelihoods on the fixture; MC2 recomputed from the same contexts and
    continuations with a plain transformers forward pass."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from posttrain.evals import harness
    from posttrain.models import tiny

    model_dir = tmp_path / "tiny"
    texts = [c for line in (FIXTURES / "truthfulqa" / "validation.jsonl").read_text().splitlines()
             for c in json.loads(line)["mc2_targets"]["choices"]] * 5
    shape = micro_recipe.model.tiny.model_copy(update={"max_positions": 1024})
    tiny.build(texts, shape, model_dir)
    rows = _rows("truthfulqa")
    logged = harness.run_lm_eval(str(model_dir), {"truthfulqa": rows}, {"truthfulqa": 8}, 4)["truthfulqa"]
    tokenizer, model = AutoTokenizer.from_pretrained(model_dir), AutoModelForCausalLM.from_pretrained(model_dir)
    ours = []
    for sample in logged:
        lls = []
        for context, continuation in (a for a in sample["arguments"]):
            # lm-eval's HF backend: context without special tokens here (no BOS in the tiny tokenizer's encode)
            whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
            n_context = len(tokenizer(context, add_special_tokens=False)["input_ids"])
            with torch.no_grad():
                logits = model(torch.tensor([whole])).logits[0].log_softmax(-1)
            lls.append(sum(logits[i - 1, whole[i]].item() for i in range(n_context, len(whole))))
        labels = sample["doc"]["mc2_targets"]["labels"]
        probs = [math.exp(x) for x in lls]
        ours.append(sum(p for p, label in zip(probs, labels) if label == 1) / sum(probs))
    assert [s["acc"] for s in logged] == pytest.approx(ours, rel=1e-4)
    records = harness.records({"truthfulqa": rows}, {"truthfulqa": logged})
    assert records["truthfulqa"]["n"] == 2 and 0 < records["truthfulqa"]["score"] < 1
