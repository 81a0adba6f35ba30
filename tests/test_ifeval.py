"""Our IFEval-style checks against lm-eval's reference implementation, on generated responses and kwargs."""
import json
import random

import pytest

from posttrain.verifiers import verify
from posttrain.verifiers.ifeval import CHECKS, follows, sentences, words_with_punctuation

FRAGMENTS = [
    "The harbour was quiet this morning.", "Die Bäckerin backt jeden Morgen frisches Brot für das ganze Dorf.",
    "La boulangère prépare le pain avant le lever du soleil.", "El marinero revisa las cuerdas del barco.",
    "Il giardiniere pianta i tulipani in primavera.", "apples, pears, and plums", "HELLO WORLD", "NASA", "OK",
    "*highlighted part*", "**bold part**", "* first point", "- second point", "***", "******", "P.S. see you",
    "p.p.s. one more", "<<A Quiet Morning>>", "<<>>", "[address]", "[name]", "Section 1", "SECTION 2", "Section 3",
    '{"answer": 42}', "```json\n{\"ok\": true}\n```", "My answer is yes.", "My answer is maybe.", '"', "Dr. Smith came.",
    "Is there anything else I can help with?", "Any other questions?", "banana banana", "tulip", "the", "Wow!",
    "what time is it?", "zzz", "e.g. this", "3.14 is pi.", "\n\n", "\n", " ", ",",
]
WORDS = ["tulip", "banana", "harbour", "bread", "the", "point", "section", "answer", "morning", "quiet"]


def _response(rng: random.Random) -> str:
    text = "".join(rng.choice(FRAGMENTS) + rng.choice([" ", "\n", "\n\n", ""]) for _ in range(rng.randint(0, 12)))
    return rng.choice([text, text.lower(), text.upper(), f'"{text}"', text.strip()])


def _kwargs(rng: random.Random, instruction_id: str, response: str) -> dict:
    relation = rng.choice(["less than", "at least"])
    return {
        "keywords:existence": {"keywords": rng.sample(WORDS, rng.randint(1, 3))},
        "keywords:frequency": {"keyword": rng.choice(WORDS), "frequency": rng.randint(1, 3), "relation": relation},
        "keywords:forbidden_words": {"forbidden_words": rng.sample(WORDS, rng.randint(1, 3))},
        "keywords:letter_frequency": {"letter": rng.choice("aeiostz"), "let_frequency": rng.randint(1, 12),
                                      "let_relation": relation},
        "language:response_language": {"language": rng.choice(["en", "de", "fr", "es", "it"])},
        "length_constraints:number_sentences": {"num_sentences": rng.randint(1, 8), "relation": relation},
        "length_constraints:number_paragraphs": {"num_paragraphs": rng.randint(1, 4)},
        "length_constraints:number_words": {"num_words": rng.randint(1, 40), "relation": relation},
        "length_constraints:nth_paragraph_first_word": {"num_paragraphs": rng.randint(1, 4),
                                                        "nth_paragraph": rng.randint(1, 3),
                                                        "first_word": rng.choice(["the", "harbour", "die", "la"])},
        "detectable_content:number_placeholders": {"num_placeholders": rng.randint(1, 3)},
        "detectable_content:postscript": {"postscript_marker": rng.choice(["P.S.", "P.P.S"])},
        "detectable_format:number_bullet_lists": {"num_bullets": rng.randint(1, 3)},
        "detectable_format:number_highlighted_sections": {"num_highlights": rng.randint(1, 3)},
        "detectable_format:multiple_sections": {"section_spliter": rng.choice(["Section", "SECTION"]),
                                                "num_sections": rng.randint(1, 3)},
        "combination:repeat_prompt": {"prompt_to_repeat": rng.choice([response[:20].strip() or "zzz", "The harbour was quiet"])},
        "startend:end_checker": {"end_phrase": rng.choice(["Any other questions?", "see you", "zzz"])},
        "change_case:capital_word_frequency": {"capital_frequency": rng.randint(1, 6), "capital_relation": relation},
    }.get(instruction_id, {})


@pytest.fixture
def reference(monkeypatch):
    """lm-eval's checks, with the two NLTK pieces that need downloaded data swapped for ours (same algorithms,
    Punkt untrained): the comparison is of the rules, which is what we reimplement."""
    from lm_eval.tasks.ifeval import instructions_registry, instructions_util
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    monkeypatch.setattr(instructions_util, "_get_sentence_tokenizer", PunktSentenceTokenizer)
    monkeypatch.setattr(instructions_util.nltk, "word_tokenize", words_with_punctuation)

    def check(response: str, instruction_id: str, kwargs: dict) -> bool:
        instruction = instructions_registry.INSTRUCTION_DICT[instruction_id](instruction_id)
        instruction.build_description(**{k: v for k, v in kwargs.items() if v})
        return bool(response.strip() and instruction.check_following(response))

    return check


def test_every_ifeval_instruction_id_has_a_check(reference):
    from lm_eval.tasks.ifeval import instructions_registry

    assert set(CHECKS) == set(instructions_registry.INSTRUCTION_DICT)


@pytest.mark.parametrize("instruction_id", sorted(CHECKS))
def test_checks_agree_with_lm_eval_reference(reference, instruction_id):
    rng = random.Random(instruction_id)
    verdicts = []
    for _ in range(150):
        response = _response(rng)
        kwargs = _kwargs(rng, instruction_id, response)
        ours, theirs = follows(response, instruction_id, kwargs), reference(response, instruction_id, kwargs)
        assert ours == theirs, (instruction_id, kwargs, response)
        verdicts.append(ours)
    # the generated cases exercise both outcomes, except where one is rare by construction
    assert any(verdicts), instruction_id
    if instruction_id not in {"change_case:english_capital", "change_case:english_lowercase"}:
        assert not all(verdicts), instruction_id


def test_known_right_and_wrong_answers():
    ground_truth = json.dumps({"instruction_id_list": ["punctuation:no_comma", "length_constraints:number_words",
                                                       "detectable_content:postscript"],
                               "kwargs": [{}, {"num_words": 5, "relation": "at least"}, {"postscript_marker": "P.S."}]})
    right = "Bread is baked every single morning.\nP.S. it is warm."
    wrong = ["Bread, warm and fresh, every morning.\nP.S. yes", "Short.\nP.S. x", "Bread is baked every morning."]
    assert verify([right, *wrong], dataset=["ifeval"] * 4, ground_truth=[ground_truth] * 4) == [1.0, 0.0, 0.0, 0.0]
    assert follows("Die Bäckerin backt jeden Morgen frisches Brot für das Dorf.", "language:response_language",
                   {"language": "de"})
    assert not follows("The baker bakes fresh bread every morning for the village.", "language:response_language",
                       {"language": "de"})
    assert sentences("Dr. Smith came. He left!") and len(sentences("One. Two? Three!")) == 3


def test_bad_kwargs_and_unknown_ids_are_named():
    with pytest.raises(KeyError, match="unknown IFEval instruction id 'keywords:nope'"):
        follows("text", "keywords:nope")
    with pytest.raises(ValueError, match="length_constraints:number_words: bad kwargs"):
        follows("text", "length_constraints:number_words", {"words": 3})
