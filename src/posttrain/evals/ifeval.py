"""IFEval's protocol and its two prompt-level scores: strict (every instruction followed by the response as
written) and loose (followed by any of eight relaxed variants: first and/or last line dropped, `*` removed),
as Google's reference and lm-eval's `ifeval` define them. Tülu 3 reports loose; the report shows both."""
from __future__ import annotations

from posttrain.evals.protocol import Protocol
from posttrain.verifiers.ifeval import follows, parse_ground_truth

PROTOCOL = Protocol(
    shots=0, chain_of_thought=False, chat_template=True, fewshot_as_multiturn=False,
    answer_extraction="the whole response (loose: also with the first/last line or '*' removed)",
    metric="prompt-level loose accuracy (strict reported beside it)", lm_eval_task="ifeval",
    published="OLMES ifeval::tulu: 0-shot, chat, prompt-level loose accuracy; Tülu 3 8B 82.4",
    differences="sentences split by NLTK Punkt without trained parameters (offline), keywords matched literally; "
                "offline the prompts are the data stage's held-out persona tasks unless google/IFEval is named")


def variants(response: str) -> list[str]:
    """The eight responses the loose score tries, in the reference's order."""
    lines = response.split("\n")
    first, last, both = ("\n".join(part).strip() for part in (lines[1:], lines[:-1], lines[1:-1]))
    relaxed = [response, first, last, both]
    return [response, response.replace("*", ""), first, last, both, *(r.replace("*", "") for r in relaxed[1:])]


def strict(rows: list[dict], completions: list[str]) -> list[float]:
    return [1.0 if all(follows(c, i, k) for i, k in parse_ground_truth(r["ground_truth"])) else 0.0
            for r, c in zip(rows, completions, strict=True)]


def loose(rows: list[dict], completions: list[str]) -> list[float]:
    outcomes = []
    for row, completion in zip(rows, completions, strict=True):
        tries = variants(completion)
        ok = all(any(follows(t, i, k) for t in tries) for i, k in parse_ground_truth(row["ground_truth"]))
        outcomes.append(1.0 if ok else 0.0)
    return outcomes


def metrics(rows: list[dict], completions: list[str]) -> dict[str, list[float]]:
    return {"prompt_level_loose": loose(rows, completions), "prompt_level_strict": strict(rows, completions)}
