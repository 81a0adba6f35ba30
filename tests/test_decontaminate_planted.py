"""Planted contamination: real GSM8K test questions (the eval registry's offline copy) hidden in training rows
verbatim and disguised are found; near misses and clean rows are kept. Indexing goes through the data stage."""
import random
import re
import string

from posttrain.data.decontaminate import decontaminate
from posttrain.evals import olmo
from posttrain.recipe import Recipe
from posttrain.stages import data

WRAPPERS = ["My cousin sent me this homework problem last night: {q} Can you help me work through it slowly?",
            "{q}\n\nI tried this twice and keep getting a different number than my teacher.",
            "Translate the following into French, please.\n{q}"]


def _sft(text: str) -> dict:
    return {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "Sure, let us see."}]}


def _variants(question: str, solution: str, rng: random.Random) -> dict[str, str]:
    words = question.split()
    return {
        "verbatim": question,
        "case": rng.choice([question.upper(), question.lower(), question.swapcase()]),
        "whitespace": "".join(w + rng.choice([" ", "  ", "\n", "\t", " \n "]) for w in words).strip(),
        "punctuation": question.translate(str.maketrans("", "", string.punctuation)),
        "wrapped": rng.choice(WRAPPERS).format(q=question),
        "with_solution": f"{question}\n{solution}",
    }


def test_planted_gsm8k_questions_are_removed_and_near_misses_and_clean_rows_kept():
    recipe = Recipe(name="planted").override(data={"decontamination": {"eval_sets": ["gsm8k"]}})
    index = data.eval_index(recipe, {"heldout": [], "heldout_ifeval": []})
    rows = olmo.gsm8k()
    rng = random.Random(0)
    short = [r for r in rows if len(r["question"].split()) < 25]
    chosen = short + rng.sample([r for r in rows if r not in short], 330 - len(short))
    assert len(short) >= 20 and len(chosen) == 330

    planted = [(kind, _sft(text)) for r in chosen for kind, text in _variants(r["question"], r["solution"], rng).items()]
    near = []
    for r in rng.sample(rows, 200):  # a quarter of a question's words, inside other text
        words = r["question"].split()
        start = rng.randrange(0, len(words) - len(words) // 4 + 1)
        near.append(_sft("A note from my diary: " + " ".join(words[start : start + len(words) // 4]) + " and so on."))
    clean = [_sft(f"{r['messages'][0]['content']}\n{r['solution']}") for r in olmo.math500()]  # real, other benchmark

    kept, report = decontaminate(clean + near + [row for _, row in planted], index, threshold=0.5)
    kept_ids = {id(row) for row in kept}
    missed = [(kind, row["messages"][0]["content"][:80]) for kind, row in planted if id(row) in kept_ids]
    recall = 1 - len(missed) / len(planted)
    short_missed = [m for m in missed if len(m[1].split()) < 25]
    print(f"planted {len(planted)}, recall {recall:.4f}, missed {len(missed)} ({len(short_missed)} short); "
          f"near misses kept {sum(id(r) in kept_ids for r in near)}/200; clean kept "
          f"{sum(id(r) in kept_ids for r in clean)}/{len(clean)}")
    assert recall >= 0.995, missed[:5]
    assert all(id(row) in kept_ids for row in near)
    assert all(id(row) in kept_ids for row in clean)
    assert report["by_eval_set"]["gsm8k"]["eval_items_hit"] == 330


def test_punctuation_removed_inside_numbers_and_words_still_matches():
    recipe = Recipe(name="p").override(data={"decontamination": {"eval_sets": ["gsm8k"]}})
    index = data.eval_index(recipe, {"heldout": [], "heldout_ifeval": []})
    question = next(r["question"] for r in olmo.gsm8k() if re.search(r"\d,\d{3}", r["question"]))
    stripped = re.sub(r"(\d),(\d)", r"\1\2", question).replace("'", "")
    assert stripped != question and index.match(stripped, 0.5)
