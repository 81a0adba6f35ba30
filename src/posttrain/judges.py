"""Judges turn a prompt's sampled completions into scores; the preference stage pairs best against worse.

One shape for all: `judge(row, completions) -> list[float] | None` (None: the prompt is skipped).
- `verifier`: 1.0 when the row's verifier accepts the completion, else 0.0.
- `reward_model`: an `AutoModelForSequenceClassification` scoring the whole conversation.
- `llm`: an OpenAI-compatible chat endpoint rating each completion 1-5 on Tülu 3's rubric (helpfulness,
  honesty, instruction following, truthfulness); the score is the mean. Unparsable answers are retried,
  then counted and skipped; 5xx and connection errors are retried with backoff.
"""
from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

from posttrain.generators import OpenAIGenerator, Request

from posttrain.verifiers import verify

ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")
RUBRIC = (
    "You are grading an AI assistant's answer. Rate it from 1 (poor) to 5 (excellent) on each aspect:\n"
    "- helpfulness: does it solve the user's problem?\n- honesty: does it avoid claiming what it cannot know?\n"
    "- instruction_following: does it do exactly what was asked, in the form asked?\n"
    "- truthfulness: is everything it states correct?\n"
    'Answer with JSON only, e.g. {"helpfulness": 4, "honesty": 5, "instruction_following": 3, "truthfulness": 4}.'
    "\n\n# Conversation\n{conversation}\n\n# Answer to grade\n{completion}\n"
)


def verifier_judge(row: dict, completions: list[str]) -> list[float]:
    n = len(completions)
    return verify(completions, dataset=[row["dataset"]] * n, ground_truth=[row["ground_truth"]] * n)


class RewardModelJudge:
    def __init__(self, path: str, trust_remote_code: bool = False):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1,
                                                                        trust_remote_code=trust_remote_code).eval()

    def __call__(self, row: dict, completions: list[str]) -> list[float]:
        import torch

        texts = [self.tokenizer.apply_chat_template(row["messages"] + [{"role": "assistant", "content": c}],
                                                    tokenize=False) for c in completions]
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            return self.model(**batch).logits[:, 0].float().tolist()


def parse_ratings(text: str) -> float | None:
    """Mean of the four aspect ratings in a JSON answer, or None when the answer does not hold them."""
    match = re.search(r"\{.*\}", text, re.S)
    try:
        data = json.loads(match.group(0)) if match else None
        values = [float(data[a]) for a in ASPECTS]
    except (json.JSONDecodeError, TypeError, KeyError, ValueError):
        return None
    return sum(values) / len(values) if all(1 <= v <= 5 for v in values) else None


class LLMJudge:
    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", parse_retries: int = 2,
                 http_retries: int = 3, backoff_s: float = 1.0, concurrency: int = 8, timeout_s: float = 60.0):
        self.client = OpenAIGenerator(base_url, model, api_key_env, concurrency=1, retries=http_retries,
                                      backoff_s=backoff_s, timeout_s=timeout_s)
        self.parse_retries, self.concurrency = parse_retries, concurrency
        self.unparsable = 0  # completions skipped because every answer was unparsable

    def _ask(self, prompt: str, attempt: int) -> str:
        return self.client([Request.user(prompt, temperature=0.0, seed=attempt)])[0]

    def _rate(self, row: dict, completion: str) -> float | None:
        conversation = "\n".join(f"{m['role']}: {m['content']}" for m in row["messages"])
        prompt = RUBRIC.replace("{conversation}", conversation).replace("{completion}", completion)
        for attempt in range(self.parse_retries + 1):
            score = parse_ratings(self._ask(prompt, attempt))
            if score is not None:
                return score
        self.unparsable += 1
        return None

    def __call__(self, row: dict, completions: list[str]) -> list[float | None]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda c: self._rate(row, c), completions))
