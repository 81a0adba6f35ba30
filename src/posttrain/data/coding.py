"""Persona-driven Python tasks with tests, in six languages.

Each task is a small function over a persona's daily counts. The row's `ground_truth` is assert-based tests
computed from a reference implementation, so the `code` verifier (the sandbox) scores any answer to it; the
data stage runs every templated solution against its tests and drops the ones that fail.
"""
from __future__ import annotations

import random

from posttrain.data.personas import PERSONAS

INTRO = {
    "en": "{name} is {role} and keeps a list of how many {item} there are each day.",
    "de": "{name} ist {role} und führt eine Liste, wie viele {item} es jeden Tag gibt.",
    "fr": "{name} est {role} et tient une liste du nombre de {item} chaque jour.",
    "es": "{name} es {role} y lleva una lista de cuántos {item} hay cada día.",
    "it": "{name} è {role} e tiene una lista di quanti {item} ci sono ogni giorno.",
    "pt": "{name} é {role} e mantém uma lista de quantos {item} há por dia.",
}
# name -> (solution with {k}, reference(k) -> function, description per language)
TASKS: dict[str, tuple[str, object, dict[str, str]]] = {
    "scale": ("def scale(counts):\n    return [c * {k} for c in counts]\n", lambda k: lambda xs: [x * k for x in xs], {
        "en": "Write a Python function `scale(counts)` that returns a new list with every count multiplied by {k}.",
        "de": "Schreibe eine Python-Funktion `scale(counts)`, die eine neue Liste mit jeder Zahl mal {k} zurückgibt.",
        "fr": "Écris une fonction Python `scale(counts)` qui renvoie une nouvelle liste où chaque nombre est multiplié par {k}.",
        "es": "Escribe una función de Python `scale(counts)` que devuelva una lista nueva con cada número multiplicado por {k}.",
        "it": "Scrivi una funzione Python `scale(counts)` che restituisca una nuova lista con ogni numero moltiplicato per {k}.",
        "pt": "Escreva uma função Python `scale(counts)` que devolva uma nova lista com cada número multiplicado por {k}."}),
    "restock": ("def restock(counts):\n    return [c + {k} for c in counts]\n", lambda k: lambda xs: [x + k for x in xs], {
        "en": "Write a Python function `restock(counts)` that returns a new list with {k} added to every count.",
        "de": "Schreibe eine Python-Funktion `restock(counts)`, die eine neue Liste zurückgibt, in der zu jeder Zahl {k} addiert ist.",
        "fr": "Écris une fonction Python `restock(counts)` qui renvoie une nouvelle liste où {k} est ajouté à chaque nombre.",
        "es": "Escribe una función de Python `restock(counts)` que devuelva una lista nueva sumando {k} a cada número.",
        "it": "Scrivi una funzione Python `restock(counts)` che restituisca una nuova lista aggiungendo {k} a ogni numero.",
        "pt": "Escreva uma função Python `restock(counts)` que devolva uma nova lista somando {k} a cada número."}),
    "total_above": ("def total_above(counts):\n    return sum(c for c in counts if c > {k})\n",
                    lambda k: lambda xs: sum(x for x in xs if x > k), {
        "en": "Write a Python function `total_above(counts)` that returns the sum of the counts greater than {k}.",
        "de": "Schreibe eine Python-Funktion `total_above(counts)`, die die Summe der Zahlen größer als {k} zurückgibt.",
        "fr": "Écris une fonction Python `total_above(counts)` qui renvoie la somme des nombres supérieurs à {k}.",
        "es": "Escribe una función de Python `total_above(counts)` que devuelva la suma de los números mayores que {k}.",
        "it": "Scrivi una funzione Python `total_above(counts)` che restituisca la somma dei numeri maggiori di {k}.",
        "pt": "Escreva uma função Python `total_above(counts)` que devolva a soma dos números maiores que {k}."}),
    "days_at_least": ("def days_at_least(counts):\n    return sum(1 for c in counts if c >= {k})\n",
                      lambda k: lambda xs: sum(1 for x in xs if x >= k), {
        "en": "Write a Python function `days_at_least(counts)` that returns on how many days the count was at least {k}.",
        "de": "Schreibe eine Python-Funktion `days_at_least(counts)`, die zurückgibt, an wie vielen Tagen die Zahl mindestens {k} war.",
        "fr": "Écris une fonction Python `days_at_least(counts)` qui renvoie le nombre de jours où le nombre valait au moins {k}.",
        "es": "Escribe una función de Python `days_at_least(counts)` que devuelva cuántos días el número fue al menos {k}.",
        "it": "Scrivi una funzione Python `days_at_least(counts)` che restituisca in quanti giorni il numero era almeno {k}.",
        "pt": "Escreva uma função Python `days_at_least(counts)` que devolva em quantos dias o número foi pelo menos {k}."}),
    "best_day": ("def best_day(counts):\n    return max(counts) if counts else {k}\n",
                 lambda k: lambda xs: max(xs) if xs else k, {
        "en": "Write a Python function `best_day(counts)` that returns the largest count, or {k} for an empty list.",
        "de": "Schreibe eine Python-Funktion `best_day(counts)`, die die größte Zahl zurückgibt, oder {k} bei einer leeren Liste.",
        "fr": "Écris une fonction Python `best_day(counts)` qui renvoie le plus grand nombre, ou {k} pour une liste vide.",
        "es": "Escribe una función de Python `best_day(counts)` que devuelva el número más grande, o {k} si la lista está vacía.",
        "it": "Scrivi una funzione Python `best_day(counts)` che restituisca il numero più grande, oppure {k} per una lista vuota.",
        "pt": "Escreva uma função Python `best_day(counts)` que devolva o maior número, ou {k} para uma lista vazia."}),
}


def tests(name: str, k: int, rng: random.Random) -> str:
    """Assert-based tests from the reference implementation, on an empty list and three random ones."""
    reference = TASKS[name][1](k)
    cases = [[]] + [[rng.randint(0, 20) for _ in range(rng.randint(1, 6))] for _ in range(3)]
    return "\n".join(f"assert {name}({xs!r}) == {reference(xs)!r}" for xs in cases) + "\n"


def task(rng: random.Random, language: str) -> dict:
    persona = rng.choice(PERSONAS)
    role, item = persona[language]
    name = rng.choice(sorted(TASKS))
    k = rng.randint(2, 9)
    solution, _, text = TASKS[name]
    prompt = INTRO[language].format(name=persona["name"], role=role, item=item) + " " + text[language].format(k=k)
    return {"messages": [{"role": "user", "content": prompt}], "ground_truth": tests(name, k, rng), "dataset": "code",
            "solution": f"```python\n{solution.format(k=k)}```", "language": language, "family": "code",
            "persona": persona["name"]}
