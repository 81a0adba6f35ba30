"""How a benchmark is asked and scored, stated beside it so a number can be set beside a published one.

Each benchmark module holds one `Protocol` (`olmo.GSM8K`, `olmo.MATH`, `olmo.MMLU`, `ifeval.PROTOCOL`,
`humaneval.PROTOCOL`); docs/TULU3.md, "Evaluation protocols" tabulates them against Tülu 3's evaluation table (OLMES).
"""
from __future__ import annotations

from dataclasses import dataclass
from math import comb


@dataclass(frozen=True)
class Protocol:
    shots: int  # worked examples before the question
    chain_of_thought: bool  # the model reasons before its answer (the exemplars do, too)
    chat_template: bool  # prompts go through the model's chat template
    fewshot_as_multiturn: bool  # exemplars are earlier user/assistant turns, not one long user message
    answer_extraction: str  # how the answer is read from the completion
    metric: str  # what one item scores
    temperature: float = 0.0  # 0: greedy
    samples: int = 1  # completions per item (pass@k needs k or more)
    k: int = 1  # pass@k reported as the score when samples > 1
    lm_eval_task: str | None = None  # the lm-eval task the `lm_eval` engine runs for this benchmark
    stop: tuple[str, ...] = ()  # a completion ends at the first of these (a few-shot model goes on to "Q:")
    published: str = ""  # Tülu 3's setting (arXiv 2411.15124, evaluation table; OLMES task configs)
    differences: str = ""  # where ours departs from the published setting, and why

    def __post_init__(self):
        if self.samples < self.k:
            raise ValueError(f"protocol: pass@{self.k} needs at least {self.k} samples, got {self.samples}")
        if self.samples > 1 and self.temperature <= 0:
            raise ValueError("protocol: several samples per item need temperature > 0")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c pass (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k: need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    return 1.0 if n - c < k else 1.0 - comb(n - c, k) / comb(n, k)


def pass_at(outcomes: list[list[float]], k: int) -> list[float]:
    """Per item, the unbiased pass@k of its samples' outcomes (each 1.0 pass or 0.0 fail)."""
    return [pass_at_k(len(o), int(sum(o)), k) for o in outcomes]


def cut(completion: str, stop: tuple[str, ...]) -> str:
    """The completion up to the first stop sequence, as lm-eval's `until` cuts it."""
    for sequence in stop:
        completion = completion.split(sequence, 1)[0]
    return completion
