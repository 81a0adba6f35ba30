"""Persona synthesis (math, precise instruction following, code) in every language, augmentation, and the
model backends: the `openai` one against a local OpenAI-compatible server."""
import random
import re

import pytest

from posttrain.data import coding, instructions
from posttrain.data.arithmetic import problem
from posttrain.data.synthesis import ModelWriter, Tally, perturb, retell, verified
from posttrain.generators import GeneratorError, OpenAIGenerator, Request
from posttrain.stages import data
from posttrain.store import read_jsonl
from posttrain.verifiers import verify
from posttrain.verifiers.ifeval import parse_ground_truth

LANGUAGES = sorted(instructions.TASK)


@pytest.mark.parametrize("language", LANGUAGES)
def test_templated_ifeval_and_code_tasks_pass_their_own_verifiers_in_every_language(language):
    rng = random.Random(language)
    rows = [instructions.task(rng, language) for _ in range(60)] + [coding.task(rng, language) for _ in range(10)]
    assert verify([r["solution"] for r in rows], dataset=[r["dataset"] for r in rows],
                  ground_truth=[r["ground_truth"] for r in rows]) == [1.0] * len(rows)
    ids = {i for r in rows[:60] for i, _ in parse_ground_truth(r["ground_truth"])}
    assert len(ids) >= 8  # the constraints vary
    # a wrong answer fails: the verifier is not a rubber stamp
    assert verify(["no"], dataset=["code"], ground_truth=[rows[-1]["ground_truth"]]) == [0.0]


def test_numeric_perturbation_recomputes_the_answer_and_keeps_persona_and_language():
    rng = random.Random(0)
    for operation in ("add", "sub"):
        seed = problem(rng, 3, operation, "de")
        variant = perturb(seed, rng)
        a, b = variant["operands"]
        assert variant["operands"] != seed["operands"] and all(100 <= x <= 999 for x in (a, b))
        assert variant["ground_truth"] == str(a + b if operation == "add" else a - b)
        assert (variant["persona"], variant["language"]) == (seed["persona"], seed["language"])
        assert verified([variant], Tally(), "augmented") == [variant]
    assert perturb({"messages": [], "dataset": "arithmetic"}, rng) is None  # nothing structured to re-number


def test_retelling_changes_persona_and_language_but_not_the_problem():
    rng = random.Random(1)
    seed = problem(rng, 3, "add", "en")
    told = [retell(seed, rng, ["fr", "it"]) for _ in range(5)]
    for row in told:
        assert row["persona"] != seed["persona"] and row["language"] in {"fr", "it"}
        assert row["operands"] == seed["operands"] and row["ground_truth"] == seed["ground_truth"]
        assert verify([row["solution"]], dataset=["arithmetic"], ground_truth=[row["ground_truth"]]) == [1.0]


def test_the_data_stage_mixes_families_and_augmentations_and_counts_them(tmp_path, micro_recipe):
    recipe = micro_recipe.override(data={"languages": ["en", "de", "fr", "es", "it", "pt"], "synthesis": {
        "ifeval_rows": 30, "code_rows": 10, "rlvr_ifeval_rows": 8, "perturbations": 1, "retellings": 1}})
    report = data.run(recipe, tmp_path)
    sft, rlvr = read_jsonl(tmp_path / "sft.jsonl"), read_jsonl(tmp_path / "rlvr.jsonl")
    assert report["families"]["sft"] == {"math": 64, "ifeval": 30, "code": 10}
    assert report["families"]["rlvr"] == {"math": 16, "ifeval": 8}
    assert {r.get("augmented") for r in sft} == {None, "perturbed", "retold"}
    assert len(report["languages"]["sft"]) == 6
    syn = report["synthesis"]
    assert syn["augmented"]["perturbed"] > 0 and syn["augmented"]["retold"] > 0
    assert syn["failed_verification"] == {"augmented": 0, "ifeval": 0, "code": 0}
    scores = verify([r["messages"][-1]["content"] for r in sft], dataset=[r["dataset"] for r in sft],
                    ground_truth=[r["ground_truth"] for r in sft])
    assert scores == [0.0 if r.get("teacher_slip") else 1.0 for r in sft]  # right, but for the teacher's slips


def test_near_duplicates_are_removed_across_sources_and_synthetic_data(tmp_path, micro_recipe):
    import json

    synthetic = data.run(micro_recipe, tmp_path / "plain")
    first = read_jsonl(tmp_path / "plain" / "sft.jsonl")[0]
    question = first["messages"][0]["content"]
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "ok"}]}
            for q in [question.upper(), question + " Please.", "Something else entirely, about ropes and knots."]]
    (tmp_path / "extra.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = micro_recipe.override(data={"sources": [{"name": "extra", "path": str(tmp_path / "extra.jsonl"),
                                                      "fraction": 1.0}]})
    report = data.run(recipe, tmp_path / "mixed")
    assert report["sources"]["extra"]["duplicates"] == 2  # the exact (case-changed) copy and the near copy
    assert report["duplicates_dropped"]["by_group"]["source_sft/exact"] == 1
    assert report["duplicates_dropped"]["by_group"]["source_sft/near"] == 1
    assert report["rows"]["sft"] == synthetic["rows"]["sft"] + 1


# --- model backends ---------------------------------------------------------------------------------------

def _fake_model(body: dict) -> str:
    """Answers the synthesis prompts like a (sometimes wrong) model would."""
    prompt = body["messages"][0]["content"]
    number = (int.from_bytes(prompt.encode()[-8:], "little") + 7919 * body.get("seed", 0)) % 900 + 100
    if prompt.startswith("Write one short math word problem"):
        persona = prompt.split("that ", 1)[1].split(" might")[0]
        item = ["jars", "boxes", "coins", "maps", "lamps", "ropes"][number % 6]
        return f"{persona} has {number} {item} and gets {number // 3} more {item}. How many {item} are there now?"
    if "Solve it step by step" in prompt:
        a, b = map(int, re.findall(r"\d+", prompt.split("\n\n")[0])[:2])
        wrong = a % 5 == 0 and body.get("seed") == 1  # the two answers disagree: dropped
        return f"{a}+{b}={a + b + wrong}. The answer is {a + b + wrong}."
    if prompt.startswith("Rewrite this math word problem"):
        problem_text = " ".join(reversed(prompt.split("\n\n", 1)[1].split()))  # "translated": new words, same numbers
        return problem_text if number % 4 else problem_text + " 7"  # an added number: dropped
    if prompt.startswith("Write one short Python programming task"):
        body_ok = number % 3 != 0
        return ("TASK: Write add(a, b) returning the sum.\nSOLUTION:\n```python\ndef add(a, b):\n    return a "
                f"{'+' if body_ok else '-'} b\n```\nTESTS:\n```python\nassert add(2, {number}) == {2 + number}\n```")
    if prompt.startswith("Write one short request"):
        return "Tell me about my day."
    return "A short answer, with a comma."  # an answer to a constrained request


def test_openai_backend_retries_a_5xx_then_caches_every_answer(chat_server, tmp_path):
    failures = []

    def answer(body):
        if not failures:
            failures.append(body)
            return 503
        return _fake_model(body)

    url = chat_server.start(answer)
    client = OpenAIGenerator(url, "m", backoff_s=0.01, cache_dir=str(tmp_path / "cache"))
    requests = [Request.user(f"Write one short math word problem that P{i} might meet", seed=i) for i in range(6)]
    first = client(requests)
    assert len(failures) == 1 and client.sent == 6 and len(chat_server.bodies) == 7  # 6 + the retried one
    again = OpenAIGenerator(url, "m", cache_dir=str(tmp_path / "cache"))
    assert again(requests) == first and again.cache_hits == 6 and again.sent == 0
    assert len(chat_server.bodies) == 7  # the rerun sent nothing

    broken = OpenAIGenerator(chat_server.start(lambda body: 500), "m", retries=2, backoff_s=0.01)
    with pytest.raises(GeneratorError, match=r"HTTP 500 after 3 attempts"):
        broken([Request.user("hello")])


def test_data_stage_on_the_openai_backend_verifies_counts_and_reruns_for_free(chat_server, tmp_path, micro_recipe):
    url = chat_server.start(_fake_model)
    recipe = micro_recipe.override(data={"synthesis": {"backend": "openai", "url": url, "model": "m",
                                                       "retellings": 1, "cache_dir": str(tmp_path / "cache")}})
    report = data.run(recipe, tmp_path / "first")
    syn = report["synthesis"]
    assert syn["backend"] == "openai" and syn["failed_verification"]["math"] > 0  # disagreeing answers dropped
    assert syn["failed_verification"]["retold"] > 0 and syn["augmented"]["retold"] > 0
    sent = len(chat_server.bodies)
    rerun = data.run(recipe, tmp_path / "second")  # a new output, the same cache: no request is sent again
    assert len(chat_server.bodies) == sent
    assert read_jsonl(tmp_path / "second" / "sft.jsonl") == read_jsonl(tmp_path / "first" / "sft.jsonl")
    assert rerun["rows"] == report["rows"]


def test_model_written_code_and_ifeval_rows_are_verified(chat_server, tmp_path):
    writer = ModelWriter(OpenAIGenerator(chat_server.start(_fake_model), "m"), ["a baker"], ("en", "de"),
                         random.Random(0))
    tally = Tally()
    code = writer.code(12, tally)
    assert code and tally.failed_verification["code"] > 0 and len(code) + tally.failed_verification["code"] == 12
    assert all(verify([r["solution"]], dataset=["code"], ground_truth=[r["ground_truth"]]) == [1.0] for r in code)
    kept = writer.ifeval(20, tally)
    assert tally.generated["ifeval"] == 20 and len(kept) + tally.failed_verification["ifeval"] == 20
    assert tally.failed_verification["ifeval"] > 0  # "A short answer, with a comma." breaks most constraints
    assert all(verify([r["solution"]], dataset=["ifeval"], ground_truth=[r["ground_truth"]]) == [1.0] for r in kept)
