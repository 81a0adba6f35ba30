"""IFEval-style constraint verifiers: every instruction id of Google's IFEval, with its kwargs.

A row's `ground_truth` is JSON in the IFEval format, `{"instruction_id_list": [...], "kwargs": [{...}, ...]}`;
the reward is 1.0 when the response follows every instruction (IFEval's "strict" prompt-level score).

The checks follow IFEval's reference (lm-eval's `tasks/ifeval/instructions.py`) rule for rule, with two
deliberate differences: sentences are split by NLTK's Punkt with default parameters and words by NLTK's
word tokenizer, neither of which needs downloaded data (the reference loads Punkt's trained English model,
which cannot be fetched offline); and keywords are matched literally, not as regular expressions.
`tests/test_ifeval.py` compares every id with the reference on generated cases.
"""
from __future__ import annotations

import collections
import functools
import json
import re
from typing import Callable

LESS, AT_LEAST = "less than", "at least"
CONSTRAINED_RESPONSES = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


def _compare(count: int, relation: str, threshold: int) -> bool:
    if relation == LESS:
        return count < threshold
    if relation == AT_LEAST:
        return count >= threshold
    raise ValueError(f"relation must be {LESS!r} or {AT_LEAST!r}, got {relation!r}")


@functools.cache
def _punkt():
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    return PunktSentenceTokenizer()


def sentences(text: str) -> list[str]:
    return _punkt().tokenize(text)


def words_with_punctuation(text: str) -> list[str]:
    """NLTK's `word_tokenize` without its data download: Punkt sentences, then the Treebank-style tokenizer."""
    from nltk.tokenize import NLTKWordTokenizer

    tokenizer = NLTKWordTokenizer()
    return [token for sentence in sentences(text) for token in tokenizer.tokenize(sentence)]


def count_words(text: str) -> int:
    return len(re.findall(r"\w+", text))


def detect_language(text: str) -> str | None:
    """ISO 639-1 code from langdetect (seeded, so deterministic), or None when it cannot tell."""
    from langdetect import DetectorFactory, LangDetectException, detect

    DetectorFactory.seed = 0
    try:
        return detect(text)
    except LangDetectException:
        return None


def _paragraph_count(text: str, splitter: str) -> int | None:
    """Paragraphs between `splitter`s; None when an inner one is empty (IFEval counts that as a failure)."""
    parts = re.split(splitter, text)
    count = len(parts)
    for index, part in enumerate(parts):
        if not part.strip():
            if index in (0, len(parts) - 1):
                count -= 1
            else:
                return None
    return count


def _nth_paragraph_first_word(text: str, num_paragraphs: int, nth_paragraph: int, first_word: str) -> bool:
    paragraphs = re.split(r"\n\n", text)
    count = sum(1 for p in paragraphs if p.strip())
    if nth_paragraph > count or not paragraphs[nth_paragraph - 1].strip():
        return False
    word = paragraphs[nth_paragraph - 1].strip().split()[0].strip().lstrip("'").lstrip('"')
    word = re.split(r"[.,?!'\"]", word)[0].lower()
    return count == num_paragraphs and word == first_word.lower()


def _postscript(text: str, postscript_marker: str) -> bool:
    marker = postscript_marker.strip()
    pattern = {"P.P.S": r"\s*p\.\s?p\.\s?s.*$", "P.S.": r"\s*p\.\s?s\..*$"}.get(marker, r"\s*" + marker.lower() + r".*$")
    return bool(re.findall(pattern, text.lower(), flags=re.MULTILINE))


def _highlights(text: str) -> int:
    single = [h for h in re.findall(r"\*[^\n\*]*\*", text) if h.strip("*").strip()]
    double = [h for h in re.findall(r"\*\*[^\n\*]*\*\*", text) if h.removeprefix("**").removesuffix("**").strip()]
    return len(single) + len(double)


def _json(text: str) -> bool:
    text = text.strip()
    for prefix in ("```json", "```Json", "```JSON", "```"):
        text = text.removeprefix(prefix)
    try:
        json.loads(text.removesuffix("```").strip())
    except ValueError:
        return False
    return True


def _two_responses(text: str) -> bool:
    parts = text.split("******")
    valid = []
    for index, part in enumerate(parts):
        if part.strip():
            valid.append(part)
        elif index not in (0, len(parts) - 1):
            return False
    return len(valid) == 2 and valid[0].strip() != valid[1].strip()


def _mentions(text: str, word: str) -> int:
    return len(re.findall(re.escape(word.strip()), text, flags=re.IGNORECASE))


def _case(text: str, upper: bool) -> bool:
    if not (text.isupper() if upper else text.islower()):
        return False
    language = detect_language(text)
    return language is None or language == "en"  # like IFEval: undetectable text counts as followed


CHECKS: dict[str, Callable[..., bool]] = {
    "keywords:existence": lambda t, keywords: all(_mentions(t, k) for k in keywords),
    "keywords:frequency": lambda t, keyword, frequency, relation: _compare(_mentions(t, keyword), relation, frequency),
    "keywords:forbidden_words": lambda t, forbidden_words: not any(
        re.search(r"\b" + re.escape(w) + r"\b", t, flags=re.IGNORECASE) for w in forbidden_words),
    "keywords:letter_frequency": lambda t, letter, let_frequency, let_relation: _compare(
        t.lower().count(letter.strip().lower()), let_relation if let_relation == LESS else AT_LEAST, let_frequency),
    "language:response_language": lambda t, language: detect_language(t) in (None, language),
    "length_constraints:number_sentences": lambda t, num_sentences, relation: _compare(
        len(sentences(t)), relation, num_sentences),
    "length_constraints:number_paragraphs": lambda t, num_paragraphs: _paragraph_count(
        t, r"\s?\*\*\*\s?") == num_paragraphs,
    "length_constraints:number_words": lambda t, num_words, relation: _compare(count_words(t), relation, num_words),
    "length_constraints:nth_paragraph_first_word": _nth_paragraph_first_word,
    "detectable_content:number_placeholders": lambda t, num_placeholders: len(
        re.findall(r"\[.*?\]", t)) >= num_placeholders,
    "detectable_content:postscript": _postscript,
    "detectable_format:number_bullet_lists": lambda t, num_bullets: len(
        re.findall(r"^\s*\*[^\*].*$", t, flags=re.MULTILINE)) + len(
        re.findall(r"^\s*-.*$", t, flags=re.MULTILINE)) == num_bullets,
    "detectable_format:constrained_response": lambda t: any(r in t.strip() for r in CONSTRAINED_RESPONSES),
    "detectable_format:number_highlighted_sections": lambda t, num_highlights: _highlights(t) >= num_highlights,
    "detectable_format:multiple_sections": lambda t, section_spliter, num_sections: len(
        re.split(r"\s?" + re.escape(section_spliter.strip()) + r"\s?\d+\s?", t)) - 1 >= num_sections,
    "detectable_format:json_format": _json,
    "detectable_format:title": lambda t: any(title.lstrip("<").rstrip(">").strip()
                                             for title in re.findall(r"<<[^\n]+>>", t)),
    "combination:two_responses": _two_responses,
    "combination:repeat_prompt": lambda t, prompt_to_repeat: t.strip().lower().startswith(
        prompt_to_repeat.strip().lower()),
    "startend:end_checker": lambda t, end_phrase: t.strip().strip('"').lower().endswith(end_phrase.strip().lower()),
    "change_case:capital_word_frequency": lambda t, capital_frequency, capital_relation: _compare(
        sum(1 for w in words_with_punctuation(t) if w.isupper()), capital_relation, capital_frequency),
    "change_case:english_capital": lambda t: _case(t, upper=True),
    "change_case:english_lowercase": lambda t: _case(t, upper=False),
    "punctuation:no_comma": lambda t: "," not in t,
    "startend:quotation": lambda t: len(t.strip()) > 1 and t.strip()[0] == '"' and t.strip()[-1] == '"',
}


def follows(response: str, instruction_id: str, kwargs: dict | None = None) -> bool:
    """Whether `response` follows one IFEval instruction. Empty kwargs values are dropped, as in IFEval."""
    if instruction_id not in CHECKS:
        raise KeyError(f"unknown IFEval instruction id {instruction_id!r}; known: {sorted(CHECKS)}")
    kwargs = {k: v for k, v in (kwargs or {}).items() if v}
    try:
        return bool(response.strip()) and CHECKS[instruction_id](response, **kwargs)
    except TypeError as exc:
        raise ValueError(f"{instruction_id}: bad kwargs {sorted(kwargs)}: {exc}") from None


def parse_ground_truth(ground_truth: str | dict) -> list[tuple[str, dict]]:
    data = json.loads(ground_truth) if isinstance(ground_truth, str) else ground_truth
    ids, kwargs = data["instruction_id_list"], data.get("kwargs") or [{}] * len(data["instruction_id_list"])
    if len(ids) != len(kwargs):
        raise ValueError(f"ifeval ground_truth: {len(ids)} instruction ids but {len(kwargs)} kwargs")
    return list(zip(ids, kwargs))


def ifeval_reward(completions: list[str], ground_truth: list[str], **_: object) -> list[float]:
    """1.0 when a completion follows every instruction of its row, else 0.0. A ground truth in the Tülu 3 RLVR
    mixture's format (one `func_name` and its arguments) is scored by that dataset's rules."""
    from posttrain.verifiers import if_functions

    scores = []
    for completion, truth in zip(completions, ground_truth, strict=True):
        data = json.loads(truth) if isinstance(truth, str) else truth
        if isinstance(data, dict) and "func_name" in data:
            ok = if_functions.follows(completion, data)
        else:
            ok = all(follows(completion, i, k) for i, k in parse_ground_truth(data))
        scores.append(1.0 if ok else 0.0)
    return scores
