"""Persona-driven precise-instruction-following tasks (Tülu 3's "IF" persona data), in six languages.

A task asks for a short note about a persona's work under one to three IFEval constraints. The row's
`ground_truth` is the constraints in the IFEval format, so the `ifeval` verifier scores any answer to it.
The template backend writes a response that should follow every constraint; the data stage verifies each
one and drops (and counts) any that does not, the same gate model-written responses go through.
"""
from __future__ import annotations

import json
import random

from posttrain.data.personas import PERSONAS
from posttrain.verifiers.ifeval import count_words

LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian", "pt": "Portuguese"}
TASK = {
    "en": "{name} is {role}. Write a short note for {name} about the {item}.",
    "de": "{name} ist {role}. Schreibe für {name} eine kurze Notiz über die {item}.",
    "fr": "{name} est {role}. Écris pour {name} une courte note sur les {item}.",
    "es": "{name} es {role}. Escribe para {name} una nota breve sobre los {item}.",
    "it": "{name} è {role}. Scrivi per {name} una breve nota sui {item}.",
    "pt": "{name} é {role}. Escreva para {name} uma nota curta sobre os {item}.",
}
BODY = {
    "en": ["{name} works as {role}.", "Today there were many {item} to count.", "Everything was checked twice.",
           "Tomorrow the work goes on."],
    "de": ["{name} arbeitet als {role}.", "Heute gab es viele {item} zu zählen.", "Alles wurde zweimal geprüft.",
           "Morgen geht die Arbeit weiter."],
    "fr": ["{name} travaille comme {role}.", "Aujourd'hui il y avait beaucoup de {item} à compter.",
           "Tout a été vérifié deux fois.", "Demain le travail continue."],
    "es": ["{name} trabaja como {role}.", "Hoy había muchos {item} que contar.", "Todo se revisó dos veces.",
           "El trabajo sigue mañana."],
    "it": ["{name} lavora come {role}.", "Oggi c'erano molti {item} da contare.", "Tutto è stato controllato due volte.",
           "Domani il lavoro continua."],
    "pt": ["{name} trabalha como {role}.", "Hoje havia muitos {item} para contar.", "Tudo foi verificado duas vezes.",
           "Amanhã o trabalho continua."],
}
# (keyword, a sentence that uses it)
KEYWORD = {"en": ("morning", "The morning was calm."), "de": ("Morgen", "Der Morgen war ruhig."),
           "fr": ("matin", "Le matin était calme."), "es": ("tarde", "La tarde fue tranquila."),
           "it": ("mattina", "La mattina era tranquilla."), "pt": ("manhã", "A manhã foi tranquila.")}
AND = {"en": "and", "de": "und", "fr": "et", "es": "y", "it": "e", "pt": "e"}
POSTSCRIPT = {"en": "Thank you for reading.", "de": "Danke fürs Lesen.", "fr": "Merci de votre lecture.",
              "es": "Gracias por leer.", "it": "Grazie per la lettura.", "pt": "Obrigado pela leitura."}
END_PHRASE = {"en": "Is there anything else I can help with?", "de": "Kann ich sonst noch helfen?",
              "fr": "Puis-je vous aider autrement ?", "es": "¿Puedo ayudar en algo más?",
              "it": "Posso aiutare in altro?", "pt": "Posso ajudar em mais alguma coisa?"}
DESCRIBE: dict[str, dict[str, str]] = {
    "punctuation:no_comma": {
        "en": "Do not use any commas.", "de": "Verwende keine Kommas.", "fr": "N'utilise aucune virgule.",
        "es": "No uses comas.", "it": "Non usare virgole.", "pt": "Não use vírgulas."},
    "detectable_format:title": {
        "en": "Give it a title in double angular brackets, like <<title>>.",
        "de": "Gib ihr einen Titel in doppelten spitzen Klammern, etwa <<Titel>>.",
        "fr": "Donne-lui un titre entre doubles chevrons, comme <<titre>>.",
        "es": "Ponle un título entre dobles corchetes angulares, como <<título>>.",
        "it": "Dalle un titolo tra doppie parentesi angolari, come <<titolo>>.",
        "pt": "Dê-lhe um título entre duplos colchetes angulares, como <<título>>."},
    "detectable_content:postscript": {
        "en": "End with a postscript starting with P.S.", "de": "Schließe mit einem Postskriptum, das mit P.S. beginnt.",
        "fr": "Termine par un post-scriptum commençant par P.S.", "es": "Termina con una posdata que empiece por P.S.",
        "it": "Concludi con un poscritto che inizi con P.S.", "pt": "Termine com um pós-escrito começando com P.S."},
    "detectable_format:number_bullet_lists": {
        "en": "Use exactly {num_bullets} Markdown bullet points, like * point.",
        "de": "Verwende genau {num_bullets} Markdown-Aufzählungspunkte, etwa * Punkt.",
        "fr": "Utilise exactement {num_bullets} puces Markdown, comme * point.",
        "es": "Usa exactamente {num_bullets} viñetas de Markdown, como * punto.",
        "it": "Usa esattamente {num_bullets} punti elenco Markdown, come * punto.",
        "pt": "Use exatamente {num_bullets} marcadores Markdown, como * ponto."},
    "length_constraints:number_paragraphs": {
        "en": "Write exactly {num_paragraphs} paragraphs separated by the Markdown divider ***.",
        "de": "Schreibe genau {num_paragraphs} Absätze, getrennt durch den Markdown-Trenner ***.",
        "fr": "Écris exactement {num_paragraphs} paragraphes séparés par le séparateur Markdown ***.",
        "es": "Escribe exactamente {num_paragraphs} párrafos separados por el divisor Markdown ***.",
        "it": "Scrivi esattamente {num_paragraphs} paragrafi separati dal divisore Markdown ***.",
        "pt": "Escreva exatamente {num_paragraphs} parágrafos separados pelo divisor Markdown ***."},
    "detectable_format:number_highlighted_sections": {
        "en": "Highlight at least {num_highlights} parts with Markdown, like *highlighted part*.",
        "de": "Hebe mindestens {num_highlights} Stellen mit Markdown hervor, etwa *hervorgehoben*.",
        "fr": "Mets en évidence au moins {num_highlights} passages en Markdown, comme *passage*.",
        "es": "Resalta al menos {num_highlights} partes con Markdown, como *parte resaltada*.",
        "it": "Evidenzia almeno {num_highlights} parti con Markdown, come *parte evidenziata*.",
        "pt": "Destaque pelo menos {num_highlights} partes com Markdown, como *parte destacada*."},
    "keywords:existence": {
        "en": "Include the words {keywords}.", "de": "Verwende die Wörter {keywords}.", "fr": "Utilise les mots {keywords}.",
        "es": "Incluye las palabras {keywords}.", "it": "Includi le parole {keywords}.", "pt": "Inclua as palavras {keywords}."},
    "startend:end_checker": {
        "en": 'End your answer with the exact phrase "{end_phrase}".',
        "de": 'Beende die Antwort genau mit dem Satz "{end_phrase}".',
        "fr": 'Termine ta réponse exactement par la phrase "{end_phrase}".',
        "es": 'Termina tu respuesta exactamente con la frase "{end_phrase}".',
        "it": 'Termina la risposta esattamente con la frase "{end_phrase}".',
        "pt": 'Termine a resposta exatamente com a frase "{end_phrase}".'},
    "startend:quotation": {
        "en": "Wrap your whole answer in double quotation marks.",
        "de": "Setze die ganze Antwort in doppelte Anführungszeichen.",
        "fr": "Mets toute ta réponse entre guillemets doubles.", "es": "Pon toda tu respuesta entre comillas dobles.",
        "it": "Metti tutta la risposta tra virgolette doppie.", "pt": "Coloque toda a resposta entre aspas duplas."},
    "language:response_language": {
        "en": "Answer in English.", "de": "Antworte auf Deutsch.", "fr": "Réponds en français.",
        "es": "Responde en español.", "it": "Rispondi in italiano.", "pt": "Responda em português."},
    "length_constraints:number_words": {
        "en": "Answer in fewer than {num_words} words.", "de": "Antworte in weniger als {num_words} Wörtern.",
        "fr": "Réponds en moins de {num_words} mots.", "es": "Responde en menos de {num_words} palabras.",
        "it": "Rispondi in meno di {num_words} parole.", "pt": "Responda em menos de {num_words} palavras."},
    "change_case:english_lowercase": {"en": "Write your whole answer in lowercase letters, with no capitals."},
}
LAYOUTS = ("detectable_format:number_bullet_lists", "length_constraints:number_paragraphs",
           "detectable_format:number_highlighted_sections")


def describe(instruction_id: str, kwargs: dict, language: str) -> str:
    """The constraint as an instruction in `language` (IFEval's wording in English)."""
    text = dict(kwargs)
    if "keywords" in text:
        quoted = [f'"{k}"' for k in text["keywords"]]
        text["keywords"] = f" {AND[language]} ".join(quoted)
    return DESCRIBE[instruction_id][language].format(**text)


def choose_constraints(rng: random.Random, language: str) -> list[tuple[str, dict]]:
    """One layout at most (bullets, paragraphs or highlights), then one or two other constraints."""
    chosen: list[tuple[str, dict]] = []
    layout = rng.choice((None, *LAYOUTS))
    if layout:
        count = rng.randint(2, 3)
        chosen.append((layout, {"detectable_format:number_bullet_lists": {"num_bullets": count},
                                "length_constraints:number_paragraphs": {"num_paragraphs": count},
                                "detectable_format:number_highlighted_sections": {"num_highlights": count - 1}}[layout]))
    others = [i for i in DESCRIBE if i not in LAYOUTS and language in DESCRIBE[i]]
    if layout == "detectable_format:number_bullet_lists":  # a quote before the first bullet hides it
        others.remove("startend:quotation")
    for instruction_id in rng.sample(others, rng.randint(1, 2)):
        chosen.append((instruction_id, {"keywords:existence": {"keywords": None},
                                        "detectable_content:postscript": {"postscript_marker": "P.S."},
                                        "startend:end_checker": {"end_phrase": END_PHRASE[language]},
                                        "language:response_language": {"language": language},
                                        "length_constraints:number_words": {"num_words": None,
                                                                            "relation": "less than"},
                                        }.get(instruction_id, {})))
    return chosen


def respond(constraints: list[tuple[str, dict]], persona: dict, language: str, rng: random.Random) -> str:
    """A response written to follow `constraints`; fills in the kwargs that depend on it (keywords, word limit)."""
    role, item = persona[language]
    ids = {i: k for i, k in constraints}
    sentences = [s.format(name=persona["name"], role=role, item=item) for s in BODY[language]]
    if "keywords:existence" in ids:
        keyword, sentence = KEYWORD[language]
        sentences[1] += " " + sentence  # the item's sentence: every layout keeps the first two
        ids["keywords:existence"]["keywords"] = [item, keyword]
    if n := ids.get("detectable_format:number_bullet_lists", {}).get("num_bullets"):
        text = "\n".join(f"* {s}" for s in sentences[:n])
    elif n := ids.get("length_constraints:number_paragraphs", {}).get("num_paragraphs"):
        cut = [round(i * len(sentences) / n) for i in range(n + 1)]
        text = "\n***\n".join(" ".join(sentences[cut[i] : cut[i + 1]]) for i in range(n))
    elif n := ids.get("detectable_format:number_highlighted_sections", {}).get("num_highlights"):
        text = " ".join(f"*{s}*" if i < n else s for i, s in enumerate(sentences))
    else:
        text = " ".join(sentences)
    if "detectable_format:title" in ids:
        text = f"<<{item.capitalize()}>>\n{text}"
    if "detectable_content:postscript" in ids:
        text += f"\nP.S. {POSTSCRIPT[language]}"
    if "startend:end_checker" in ids:
        text += f"\n{END_PHRASE[language]}"
    if "change_case:english_lowercase" in ids:
        text = text.lower()
    if "punctuation:no_comma" in ids:
        text = text.replace(",", "")
    if "startend:quotation" in ids:
        text = f'"{text}"'
    if "length_constraints:number_words" in ids:
        ids["length_constraints:number_words"]["num_words"] = count_words(text) + rng.randint(3, 20)
    return text


def row(prompt: str, constraints: list[tuple[str, dict]], language: str, persona: str, response: str | None) -> dict:
    ground_truth = {"instruction_id_list": [i for i, _ in constraints], "kwargs": [k for _, k in constraints]}
    out = {"messages": [{"role": "user", "content": prompt}], "ground_truth": json.dumps(ground_truth),
           "dataset": "ifeval", "language": language, "family": "ifeval", "persona": persona}
    return out | ({"solution": response} if response is not None else {})


def task(rng: random.Random, language: str) -> dict:
    """One templated task with its templated response (`solution`)."""
    persona = rng.choice(PERSONAS)
    role, item = persona[language]
    constraints = choose_constraints(rng, language)
    response = respond(constraints, persona, language, rng)
    prompt = " ".join([TASK[language].format(name=persona["name"], role=role, item=item),
                       *(describe(i, k, language) for i, k in constraints)])
    return row(prompt, constraints, language, persona["name"], response)
