"""Persona-templated arithmetic word problems with verifiable answers, in several languages.

The response restates the operation, then works it column by column, right to left, writing every carry
or borrow (`347+285: 7+5+0=12, 4+8+1=13, ...`): a tiny model cannot add three-digit numbers in one step, but it can learn
one column at a time. The final line is `The answer is N.` in the row's language, which the number
verifier reads.
"""
from __future__ import annotations

import random
from typing import Iterator

from posttrain.data.personas import PERSONAS

# {name}, {persona} (who they are), {a}, {b}, {item} (what they count)
QUESTIONS: dict[str, dict[str, str]] = {
    "en": {
        "add": "{name} is {persona}. {name} has {a} {item} and gets {b} more. How many {item} are there now?",
        "sub": "{name} is {persona}. {name} has {a} {item} and gives away {b}. How many {item} are left?",
    },
    "de": {
        "add": "{name} ist {persona}. {name} hat {a} {item} und bekommt {b} dazu. Wie viele {item} sind es jetzt?",
        "sub": "{name} ist {persona}. {name} hat {a} {item} und gibt {b} ab. Wie viele {item} bleiben?",
    },
    "fr": {
        "add": "{name} est {persona}. {name} a {a} {item} et en reçoit {b} de plus. Combien de {item} y a-t-il ?",
        "sub": "{name} est {persona}. {name} a {a} {item} et en donne {b}. Combien de {item} reste-t-il ?",
    },
    "es": {
        "add": "{name} es {persona}. {name} tiene {a} {item} y recibe {b} más. ¿Cuántos {item} hay ahora?",
        "sub": "{name} es {persona}. {name} tiene {a} {item} y regala {b}. ¿Cuántos {item} quedan?",
    },
    "it": {
        "add": "{name} è {persona}. {name} ha {a} {item} e ne riceve altri {b}. Quanti {item} ci sono ora?",
        "sub": "{name} è {persona}. {name} ha {a} {item} e ne regala {b}. Quanti {item} restano?",
    },
    "pt": {
        "add": "{name} é {persona}. {name} tem {a} {item} e recebe mais {b}. Quantos {item} há agora?",
        "sub": "{name} é {persona}. {name} tem {a} {item} e dá {b}. Quantos {item} restam?",
    },
}
ANSWER = {
    "en": "The answer is {n}.",
    "de": "Die Antwort ist {n}.",
    "fr": "La réponse est {n}.",
    "es": "La respuesta es {n}.",
    "it": "La risposta è {n}.",
    "pt": "A resposta é {n}.",
}


def scratchpad(a: int, b: int, operation: str, slip: bool = False) -> tuple[str, int]:
    """Column-by-column working, least significant digit first, with every carry or borrow written out, and
    the answer it arrives at. `slip`: the carry or borrow into the leading column is forgotten (written as 0)."""
    width = max(len(str(a)), len(str(b)))
    xs, ys = str(a).zfill(width)[::-1], str(b).zfill(width)[::-1]
    steps, carry, digits = [], 0, []
    for column, (x, y) in enumerate(zip(map(int, xs), map(int, ys))):
        if slip and column == width - 1:
            carry = 0
        if operation == "add":
            total = x + y + carry
            steps.append(f"{x}+{y}+{carry}={total}")
            digits.append(total % 10)
            carry = total // 10
        else:
            top = x if x - y - carry >= 0 else x + 10
            steps.append(f"{top}-{y}-{carry}={top - y - carry}")
            digits.append(top - y - carry)
            carry = 1 if top != x else 0
    value = carry * 10**width + sum(d * 10**i for i, d in enumerate(digits))
    return ", ".join(steps), value


def leading_carry(a: int, b: int, operation: str) -> bool:
    """Whether working `a op b` carries or borrows into the leading column: where a teacher can slip."""
    return scratchpad(a, b, operation, slip=True)[1] != answer(a, b, operation)


def answer(a: int, b: int, operation: str) -> int:
    return a + b if operation == "add" else a - b


def solution(a: int, b: int, operation: str, language: str, slip: bool = False) -> str:
    """The worked solution of `a op b` in `language`, ending with the answer line the number verifier reads.

    `slip`: the solution of a teacher who forgets the carry or borrow into the leading column (a wrong answer
    whenever `leading_carry`); the demo's SFT set has some, so that verifier-driven stages have work to do.
    """
    sign = "+" if operation == "add" else "-"
    # Restating the operands first turns "find the digits in a sentence" into copying from a fixed place:
    # on the same data and seed, held-out accuracy after SFT went from 0.38 to 0.70 with it.
    steps, value = scratchpad(a, b, operation, slip)
    return f"{a}{sign}{b}: {steps}. {ANSWER[language].format(n=value)}"


def render(a: int, b: int, operation: str, persona: dict, language: str) -> dict:
    """The RLVR-format row for `a op b` told about `persona` in `language`, with its worked solution.

    The operands, operation and persona stay in the row, so augmentation can re-tell or re-number it.
    """
    role, item = persona[language]
    question = QUESTIONS[language][operation].format(name=persona["name"], persona=role, item=item, a=a, b=b)
    return {
        "messages": [{"role": "user", "content": question}],
        "ground_truth": str(answer(a, b, operation)),
        "dataset": "arithmetic",
        "solution": solution(a, b, operation, language),
        "language": language,
        "family": "math",
        "operands": [a, b],
        "operation": operation,
        "persona": persona["name"],
    }


def operands(rng: random.Random, digits: int, operation: str) -> tuple[int, int]:
    low, high = 10 ** (digits - 1), 10**digits - 1
    a, b = rng.randint(low, high), rng.randint(low, high)
    return (b, a) if operation == "sub" and b > a else (a, b)


def problem(rng: random.Random, digits: int, operation: str, language: str) -> dict:
    """One RLVR-format row: `messages` (the user turn), `ground_truth` and `dataset`."""
    a, b = operands(rng, digits, operation)
    return render(a, b, operation, rng.choice(PERSONAS), language)


def problems(seed: int, count: int, digits: int, operations, languages) -> Iterator[dict]:
    rng = random.Random(seed)
    for _ in range(count):
        yield problem(rng, digits, rng.choice(operations), rng.choice(languages))


def teach(rows: list[dict], slip: float, rng: random.Random) -> int:
    """Append each SFT row's assistant turn: its solution, or with probability `slip` (math rows that carry or
    borrow into the leading column) the solution of a teacher who forgets that carry. Returns the slips."""
    slips = 0
    for row in rows:
        content = row["solution"]
        if slip and "operands" in row and leading_carry(*row["operands"], row["operation"]) and rng.random() < slip:
            content = solution(*row["operands"], row["operation"], row["language"], slip=True)
            row["teacher_slip"] = True
            slips += 1
        row["messages"] = row["messages"] + [{"role": "assistant", "content": content}]
    return slips
