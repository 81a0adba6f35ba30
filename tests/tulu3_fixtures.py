"""Rows in the exact published schemas of Tülu 3's three mixtures, written for the tests (not copied).

- `allenai/tulu-3-sft-mixture`: `id`, `messages` (role/content), `source`
- `allenai/llama-3.1-tulu-3-8b-preference-mixture`: `id`, `prompt`, `chosen`, `rejected` (message lists), `source`
- `allenai/RLVR-GSM-MATH-IF-Mixed-Constraints`: `messages`, `ground_truth` (text), `dataset` (gsm8k / MATH /
  ifeval), `constraint_type`, `constraint`; an ifeval row's ground truth is JSON with `func_name` and every
  argument of open-instruct's IF functions, null where unused.
Each RLVR row also comes with a right and a wrong completion (not part of the schema) for verifier tests.
"""
from __future__ import annotations

import json
import random

THINGS = ["lantern", "orchard", "violin", "glacier", "ferry", "quilt", "compass", "meadow", "pottery", "harbour",
          "telescope", "bakery", "canoe", "library", "volcano", "saddle", "greenhouse", "kettle", "lighthouse", "mosaic"]
VERBS = ["describe", "explain", "compare", "summarise", "imagine", "list", "outline", "praise", "critique", "sketch"]
ASPECTS = ["history", "upkeep", "cost", "smell", "sound", "colour", "weight", "origin", "future", "craft"]
IF_ARGS = ("N", "quantifier", "end_phrase", "keyword_list", "word", "forbidden_words", "letter", "i", "first_word",
           "postscript_marker", "options", "section_splitter", "original_prompt")


def _topic(rng: random.Random, i: int) -> str:
    return f"{rng.choice(VERBS)} the {rng.choice(ASPECTS)} of a {THINGS[i % len(THINGS)]} number {i}"


def sft_rows(n: int = 36, seed: int = 0) -> list[dict]:
    rng = random.Random(f"sft{seed}")
    rows = []
    for i in range(n):
        turns = [{"role": "user", "content": f"Please {_topic(rng, i)} for a curious {rng.choice(ASPECTS)} fan."},
                 {"role": "assistant", "content": f"Entry {i}: the {THINGS[(i * 7) % 20]} matters for its "
                                                  f"{rng.choice(ASPECTS)} and {rng.choice(ASPECTS)}."}]
        if i % 3 == 0:
            turns = [{"role": "system", "content": "You are a helpful assistant."}] + turns + [
                {"role": "user", "content": f"And in one word, {THINGS[(i * 3) % 20]} {i}?"},
                {"role": "assistant", "content": f"{rng.choice(ASPECTS).capitalize()} {i}."}]
        rows.append({"id": f"fixture_sft_{i}", "messages": turns, "source": rng.choice(
            ["ai2-adapt-dev/personahub_math_v5_regen_149960", "allenai/tulu-3-sft-personas-instruction-following",
             "ai2-adapt-dev/flan_v2_converted"])})
    return rows


def preference_rows(n: int = 36, seed: int = 0) -> list[dict]:
    rng = random.Random(f"pref{seed}")
    rows = []
    for i in range(n):
        prompt = f"Could you {_topic(rng, 100 + i)} in two sentences, case {i}?"
        user = {"role": "user", "content": prompt}
        rows.append({"id": f"fixture_pref_{i}", "prompt": prompt,
                     "chosen": [user, {"role": "assistant", "content": f"Gladly: the {THINGS[i % 20]} {i} is "
                                       f"known for its {rng.choice(ASPECTS)}. Its {rng.choice(ASPECTS)} is notable."}],
                     "rejected": [user, {"role": "assistant", "content": f"No idea about item {i}."}],
                     "source": rng.choice(["allenai/tulu-3-sft-reused-on-policy-8b",
                                           "allenai/tulu-3-ultrafeedback-cleaned-on-policy-8b"])})
    return rows


def _gsm8k(rng: random.Random, i: int) -> tuple[dict, str, str]:
    a, b, c = rng.randint(2, 40), rng.randint(2, 40), rng.randint(2, 9)
    answer = (a + b) * c
    question = (f"Question: A {THINGS[i % 20]} shop sells {a} items in the morning and {b} in the afternoon, "
                f"for {c} days. How many items does it sell in all (case {i})?\nAnswer:")
    row = {"messages": [{"role": "user", "content": question}], "ground_truth": str(answer), "dataset": "gsm8k",
           "constraint_type": None, "constraint": None}
    right = f"Each day it sells {a} + {b} = {a + b}. Over {c} days that is {a + b} * {c} = {answer}. The answer is {answer}."
    wrong = f"Each day it sells {a} + {b} = {a + b}. So the answer is {a + b + c}."
    return row, right, wrong


def _math(rng: random.Random, i: int) -> tuple[dict, str, str]:
    p, q = rng.randint(1, 9), rng.randint(10, 19)
    truth, wrong_value = f"\\frac{{{p}}}{{{q}}}", f"\\frac{{{q}}}{{{p}}}"
    problem = (f"Problem:\nA jar holds {p} red and {q - p} blue marbles (jar {i}). What is the probability of "
               f"drawing a red one? Express your answer as a common fraction.\n\nSolution:")
    row = {"messages": [{"role": "user", "content": problem}], "ground_truth": truth, "dataset": "MATH",
           "constraint_type": None, "constraint": None}
    right = f"There are {q} marbles, {p} red.\nFinal Answer: The final answer is ${truth}$. I hope it is correct."
    wrong = f"There are {q} marbles.\nFinal Answer: The final answer is ${wrong_value}$. I hope it is correct."
    return row, right, wrong


# (func_name, constraint_type, arguments, description, right answer, wrong answer)
IF_CASES = [
    ("validate_lowercase", "Change Cases", {}, "Your entire response should be in English, and in all lowercase letters.",
     "the harbour is calm today.", "The harbour is calm today."),
    ("validate_no_commas", "Punctuation", {}, "In your entire response, refrain from the use of any commas.",
     "The ferry leaves at noon.", "The ferry, sadly, leaves at noon."),
    ("verify_keyword_frequency", "Keywords", {"word": "tulip", "N": 2}, "The word tulip should appear 2 times.",
     "A tulip here and a tulip there.", "One tulip only."),
    ("validate_word_constraint", "Length Constraints", {"N": 5, "quantifier": "at most"}, "Answer with at most 5 words.",
     "Short and sweet.", "This answer is certainly longer than five words."),
    ("verify_letter_frequency", "Keywords", {"letter": "z", "N": 3}, "The letter z should appear 3 times.",
     "A zebra zigs and zags.", "Zebras graze."),
    ("validate_end", "Startend", {"end_phrase": "Any other questions?"}, "Finish with: Any other questions?",
     "The kettle is ready. Any other questions?", "Any other questions? The kettle is ready."),
    ("verify_bullet_points", "Detectable Format", {"N": 2}, "Your answer must contain exactly 2 bullet points.",
     "* first point\n* second point", "* only one point"),
    ("validate_title", "Detectable Format", {}, "Your answer must contain a title in double angular brackets.",
     "<<A Calm Sea>>\nThe sea was calm.", "A Calm Sea\nThe sea was calm."),
]


def _ifeval(rng: random.Random, i: int) -> tuple[dict, str, str]:
    func, kind, args, description, right, wrong = IF_CASES[i % len(IF_CASES)]
    truth = {"func_name": func, **{k: args.get(k) for k in IF_ARGS}}
    row = {"messages": [{"role": "user", "content": f"Write a note about the {THINGS[i % 20]} {i}. {description}"}],
           "ground_truth": json.dumps(truth), "dataset": "ifeval", "constraint_type": kind, "constraint": description}
    return row, right, wrong


def rlvr_cases(n: int = 36, seed: int = 0) -> list[tuple[dict, str, str]]:
    """(row, right completion, wrong completion), the three kinds in turn."""
    rng = random.Random(f"rlvr{seed}")
    return [(_gsm8k, _math, _ifeval)[i % 3](rng, i) for i in range(n)]


def rlvr_rows(n: int = 36, seed: int = 0) -> list[dict]:
    return [row for row, _, _ in rlvr_cases(n, seed)]


def write_jsonl(path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def save_tiny_llama(path, texts: list[str]) -> str:
    """A Llama-architecture model of a few thousand parameters, saved with a byte-level BPE tokenizer that has
    no chat template (as Llama-3.1-8B base ships)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from posttrain.models.tiny import train_tokenizer

    tokenizer = train_tokenizer(texts, 400)
    tokenizer.chat_template = None
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def fixture_texts() -> list[str]:
    """Every message of the fixtures, to train the tiny tokenizer on."""
    texts = [m["content"] for r in sft_rows() for m in r["messages"]]
    texts += [m["content"] for r in preference_rows() for m in r["chosen"] + r["rejected"][-1:]]
    return texts + [m["content"] for r in rlvr_rows() for m in r["messages"]]
