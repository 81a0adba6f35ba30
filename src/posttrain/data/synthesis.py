"""Persona-driven synthesis and augmentation through a backend, every result checked by its verifier.

Families: `math` (word problems with a numeric answer), `ifeval` (a task under IFEval constraints) and `code`
(a function with tests), each in the recipe's languages. Backends:
- `template`: offline and deterministic, from the structured templates in `arithmetic`, `instructions` and
  `coding` (what the demo uses);
- `transformers` / `openai`: a model writes problems and answers from persona prompts (`posttrain.generators`).
Augmentation of math rows: numeric perturbation (new operands of the same size, answer recomputed, solution
rewritten and verified) and retelling (the same problem for another persona, in another language; a model
retelling must keep every number). Whatever fails its verifier is dropped and counted, never kept.
"""
from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from posttrain import generators
from posttrain.data import arithmetic, coding, instructions
from posttrain.data.dedup import prompt_text
from posttrain.data.personas import PERSONAS
from posttrain.generators import Generator, Request
from posttrain.recipe import Recipe
from posttrain.verifiers import verify
from posttrain.verifiers.number import final_number

LANGUAGE = instructions.LANGUAGE_NAMES
PERSONA_BY_NAME = {p["name"]: p for p in PERSONAS}
_INT = re.compile(r"\d+")


@dataclass
class Tally:
    """What synthesis made and dropped, per family and per augmentation; goes into the data report."""

    generated: Counter = field(default_factory=Counter)
    failed_verification: Counter = field(default_factory=Counter)
    augmented: Counter = field(default_factory=Counter)
    exact_duplicates: int = 0  # repeats the template stream produced (not generated twice on purpose)

    def as_dict(self) -> dict:
        return {"generated": dict(self.generated), "failed_verification": dict(self.failed_verification),
                "augmented": dict(self.augmented)}


def verified(rows: list[dict], tally: Tally, kind: str) -> list[dict]:
    """Rows whose `solution` passes the row's own verifier; the others are counted under `kind`."""
    if not rows:
        return []
    scores = verify([r["solution"] for r in rows], dataset=[r["dataset"] for r in rows],
                    ground_truth=[r["ground_truth"] for r in rows])
    tally.failed_verification[kind] += scores.count(0.0)
    return [row for row, score in zip(rows, scores) if score == 1.0]


# --- augmentation of structured math rows (template backend) ---------------------------------------------

def perturb(row: dict, rng: random.Random) -> dict | None:
    """The same problem with new operands of the same number of digits; None for rows without operands."""
    if "operands" not in row:
        return None
    a, b = (rng.randint(10 ** (len(str(x)) - 1) if x >= 10 else 0, 10 ** len(str(x)) - 1) for x in row["operands"])
    if row["operation"] == "sub" and b > a:
        a, b = b, a
    return arithmetic.render(a, b, row["operation"], PERSONA_BY_NAME[row["persona"]], row["language"]) | {
        "augmented": "perturbed"}


def retell(row: dict, rng: random.Random, languages) -> dict | None:
    """The same numbers for another persona, in a language chosen from `languages` (a translation when it
    differs); None for rows without operands."""
    if "operands" not in row:
        return None
    persona = rng.choice([p for p in PERSONAS if p["name"] != row["persona"]])
    a, b = row["operands"]
    return arithmetic.render(a, b, row["operation"], persona, rng.choice(languages)) | {"augmented": "retold"}


# --- model-written families (transformers / openai backends) ----------------------------------------------

def persona_descriptions(path: str | None) -> list[str]:
    """PersonaHub-format personas (`{"persona": ...}` per line, any fsspec URL), or the shipped set."""
    if path is None:
        return [f"{p['name']}, {p['en'][0]}" for p in PERSONAS]
    import fsspec

    with fsspec.open(path, "rt", compression="infer") as handle:
        lines = [line for line in handle if line.strip()]
    found = []
    for number, line in enumerate(lines, 1):
        try:
            found.append(json.loads(line)["persona"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"{path} line {number}: expected a JSON object with a persona field") from None
    return found


MATH_PROMPT = ("Write one short math word problem that {persona} might meet at work, in {language}. Use whole "
               "numbers; the answer must be a whole number. Reply with the problem only.")
SOLVE_PROMPT = "{problem}\n\nSolve it step by step, then end with the line: {answer}"
IF_PROMPT = ("Write one short request that {persona} might send to an assistant, in {language}. Reply with the "
             "request only.")
CODE_PROMPT = ("Write one short Python programming task that {persona} might need, in {language}. Reply in exactly "
               "this form:\nTASK: <the task>\nSOLUTION:\n```python\n<the function>\n```\nTESTS:\n```python\n"
               "<assert statements>\n```")
RETELL_PROMPT = ("Rewrite this math word problem for {persona}, in {language}. Keep every number and what is asked "
                 "unchanged. Reply with the problem only.\n\n{problem}")
_CODE_REPLY = re.compile(r"TASK:\s*(.+?)\s*SOLUTION:\s*```(?:python)?\n(.+?)```\s*TESTS:\s*```(?:python)?\n(.+?)```", re.S)


@dataclass
class ModelWriter:
    """Synthesis through a generator: ask for problems in persona and language, answer them, verify."""

    generator: Generator
    personas: list[str]
    languages: tuple[str, ...]
    rng: random.Random
    serial: int = 0  # a fresh seed per new request: the same persona prompt asked twice gives two problems

    def _ask(self, prompts: list[str], temperature: float = 0.7, seed: int | None = None) -> list[str]:
        """Answers at `seed`, or each prompt at a seed of its own (then the cache never hands back a repeat)."""
        if seed is None:
            seeds = range(self.serial + 1, self.serial + 1 + len(prompts))
            self.serial += len(prompts)
        else:
            seeds = [seed] * len(prompts)
        return self.generator([Request.user(p, temperature=temperature, seed=s) for p, s in zip(prompts, seeds)])

    def _briefs(self, count: int) -> list[tuple[str, str]]:
        return [(self.rng.choice(self.personas), self.rng.choice(self.languages)) for _ in range(count)]

    def math(self, count: int, tally: Tally) -> list[dict]:
        """Problems answered twice; kept when both answers reach the same number (self-consistency)."""
        briefs = self._briefs(count)
        problems = self._ask([MATH_PROMPT.format(persona=p, language=LANGUAGE[lang]) for p, lang in briefs])
        prompts = [SOLVE_PROMPT.format(problem=q.strip(), answer=arithmetic.ANSWER[lang].format(n="N"))
                   for q, (_, lang) in zip(problems, briefs)]
        first, second = self._ask(prompts, seed=0), self._ask(prompts, seed=1)
        rows = []
        for q, (persona, lang), x, y in zip(problems, briefs, first, second):
            tally.generated["math"] += 1
            got = final_number(x)
            if got is None or got != final_number(y):
                tally.failed_verification["math"] += 1
                continue
            rows.append({"messages": [{"role": "user", "content": q.strip()}], "ground_truth": str(got),
                         "dataset": "arithmetic", "solution": x.strip(), "language": lang, "family": "math",
                         "persona": persona})
        return verified(rows, tally, "math")

    def ifeval(self, count: int, tally: Tally) -> list[dict]:
        briefs = self._briefs(count)
        requests = self._ask([IF_PROMPT.format(persona=p, language=LANGUAGE[lang]) for p, lang in briefs])
        tasks = []
        for request, (persona, lang) in zip(requests, briefs):
            constraints = instructions.choose_constraints(self.rng, lang)
            for instruction_id, kwargs in constraints:  # the kwargs a templated answer would have filled in
                if instruction_id == "keywords:existence":
                    kwargs["keywords"] = [instructions.KEYWORD[lang][0]]
                if instruction_id == "length_constraints:number_words":
                    kwargs["num_words"] = self.rng.choice([50, 100, 150])
            prompt = " ".join([request.strip(), *(instructions.describe(i, k, lang) for i, k in constraints)])
            tasks.append(instructions.row(prompt, constraints, lang, persona, None))
        for row, answer in zip(tasks, self._ask([t["messages"][0]["content"] for t in tasks], seed=0)):
            row["solution"] = answer.strip()
        tally.generated["ifeval"] += len(tasks)
        return verified(tasks, tally, "ifeval")

    def code(self, count: int, tally: Tally) -> list[dict]:
        briefs = self._briefs(count)
        rows = []
        for reply, (persona, lang) in zip(self._ask([CODE_PROMPT.format(persona=p, language=LANGUAGE[lang])
                                                     for p, lang in briefs]), briefs):
            tally.generated["code"] += 1
            match = _CODE_REPLY.search(reply)
            if not match:
                tally.failed_verification["code"] += 1
                continue
            task, solution, tests = match.groups()
            rows.append({"messages": [{"role": "user", "content": task}], "ground_truth": tests, "dataset": "code",
                         "solution": f"```python\n{solution}```", "language": lang, "family": "code",
                         "persona": persona})
        return verified(rows, tally, "code")

    def retell(self, rows: list[dict], tally: Tally) -> list[dict]:
        """Each row retold for another persona in another language; kept only when every number survives."""
        briefs = self._briefs(len(rows))
        answers = self._ask([RETELL_PROMPT.format(persona=p, language=LANGUAGE[lang],
                                                  problem=r["messages"][0]["content"]) for r, (p, lang) in zip(rows, briefs)])
        out = []
        for row, answer, (persona, lang) in zip(rows, answers, briefs):
            if sorted(_INT.findall(answer)) != sorted(_INT.findall(row["messages"][0]["content"])):
                tally.failed_verification["retold"] += 1
                continue
            retold = row | {"messages": [{"role": "user", "content": answer.strip()}], "language": lang,
                            "persona": persona, "augmented": "retold"}
            if "operands" in row:  # the worked solution in the new language
                retold["solution"] = arithmetic.solution(*row["operands"], row["operation"], lang)
            out.append(retold)
        return out


def _unique(rows, count: int, seen: set[str], attempts: int) -> tuple[list[dict], int]:
    """Up to `count` rows whose normalised prompt is new to `seen` (updated), from at most `attempts` rows."""
    kept, tried = [], 0
    for row in rows:
        tried += 1
        key = prompt_text(row)
        if key not in seen:
            seen.add(key)
            kept.append(row)
            if len(kept) == count or tried >= attempts:
                break
    return kept, tried - len(kept)


def family_rows(syn) -> dict[str, int]:
    """Rows the recipe asks of each non-math synthetic group (`data.synthesis`)."""
    return {"heldout_ifeval": syn.heldout_ifeval_rows, "sft_ifeval": syn.ifeval_rows, "sft_code": syn.code_rows,
            "rlvr_ifeval": syn.rlvr_ifeval_rows}


def _template_family(family, name: str, seed: int, count: int, languages, tally: Tally) -> list[dict]:
    rng = random.Random(f"{seed}:{name}")
    rows = [family.task(rng, rng.choice(languages)) for _ in range(count)]
    tally.generated[name.split("_")[1]] += len(rows)
    return verified(rows, tally, name.split("_")[1])


def synthesise(recipe: Recipe, cache_dir: Path, tally: Tally) -> dict[str, list[dict]]:
    """Candidate rows per group, in dedup priority order: held-out first, then training math (seeds with
    their augmentations), then the other families. Every row has passed its own verifier."""
    cfg, syn = recipe.data, recipe.data.synthesis
    training = cfg.sft_rows + cfg.preference_prompts + cfg.rlvr_prompts
    seeds_needed = -(-int(training * 1.15 + 10) // (1 + syn.perturbations + syn.retellings))
    seen: set[str] = set()
    seed = recipe.seed_for("data")
    stream = arithmetic.problems(seed, 4 * (cfg.heldout_rows + training), cfg.digits, cfg.operations, cfg.languages)
    if not cfg.heldout_rows + training:  # the arithmetic family is off: no math rows at all
        stream, seeds_needed = iter(()), 0
    heldout, dropped_h = _unique(stream, int(cfg.heldout_rows * 1.15) + 10, seen, 4 * cfg.heldout_rows + 40)
    writer = None
    if syn.backend == "template":
        seeds, dropped_s = _unique(stream, seeds_needed, seen, 4 * seeds_needed)
        tally.generated["math"] += len(heldout) + len(seeds) + dropped_h + dropped_s
    else:
        writer = ModelWriter(generators.from_config(syn.backend, model=syn.model, url=syn.url,
                                                    api_key_env=syn.api_key_env, concurrency=syn.concurrency,
                                                    cache_dir=str(cache_dir)),
                             persona_descriptions(syn.personas), cfg.languages, random.Random(seed))
        seeds = []
        for _ in range(4 if seeds_needed else 0):  # a model's answers fail verification at a rate nobody knows up front: ask again
            seeds += writer.math(seeds_needed - len(seeds), tally)
            if len(seeds) >= seeds_needed:
                break
    tally.exact_duplicates = dropped_h + (0 if writer else dropped_s)  # repeats in the template stream

    rng = random.Random(f"{seed}:augment")
    math = []
    for seed_row in seeds:
        math.append(seed_row)
        variants = [perturb(seed_row, rng) for _ in range(syn.perturbations)]
        tally.augmented["not_perturbable"] += variants.count(None)  # model-written: no operands to re-number
        math += [r for r in variants if r is not None]
        if writer is None:
            math += [r for r in (retell(seed_row, rng, cfg.languages) for _ in range(syn.retellings)) if r is not None]
    if writer is not None and syn.retellings:
        math += writer.retell([r for r in seeds for _ in range(syn.retellings)], tally)
    augmented = [r for r in math if "augmented" in r]
    tally.augmented.update(Counter(r["augmented"] for r in augmented))
    passed = {id(r) for r in verified(augmented, tally, "augmented")}
    math = [r for r in math if "augmented" not in r or id(r) in passed]  # each seed next to its variants

    groups = {"heldout": heldout, "heldout_ifeval": [], "math": math, "sft_ifeval": [], "sft_code": [],
              "rlvr_ifeval": []}
    for name, count in family_rows(syn).items():
        if not count:
            continue
        extra = int(count * (1.3 if writer else 2)) + 10  # what dedup drops; templates repeat more
        if writer is not None:
            groups[name] = writer.code(extra, tally) if name == "sft_code" else writer.ifeval(extra, tally)
        else:
            family = coding if name == "sft_code" else instructions
            groups[name] = _template_family(family, name, seed, extra, cfg.languages, tally)
    return groups
