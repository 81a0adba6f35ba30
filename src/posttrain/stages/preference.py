"""preference stage: on-policy completions judged into chosen/rejected pairs (Tülu's preference format).

Writes `pairs.jsonl` for training and `heldout_pairs.jsonl` for measuring the DPO margin, plus
`report.json` with pair statistics.
"""
from __future__ import annotations

import random
import time
from pathlib import Path
from statistics import mean

from posttrain.data.formats import read_rows
from posttrain.recipe import Recipe
from posttrain.stages.data import FILES
from posttrain.store import seal, write_json, write_jsonl
from posttrain.verifiers import verify


def verifier_pairs(rows: list[dict], completions: list[list[str]], rng: random.Random) -> tuple[list[dict], int]:
    """chosen = a verified-right completion, rejected = a wrong one; prompts without contrast are skipped."""
    pairs, skipped = [], 0
    for row, samples in zip(rows, completions, strict=True):
        scores = verify(samples, dataset=[row["dataset"]] * len(samples), ground_truth=[row["ground_truth"]] * len(samples))
        right = [s for s, score in zip(samples, scores) if score == 1.0]
        wrong = [s for s, score in zip(samples, scores) if score == 0.0]
        if not right or not wrong:
            skipped += 1
            continue
        prompt = row["messages"]
        pairs.append({
            "prompt": prompt[-1]["content"],
            "chosen": prompt + [{"role": "assistant", "content": rng.choice(right)}],
            "rejected": prompt + [{"role": "assistant", "content": rng.choice(wrong)}],
            "chosen_score": 1.0,
            "rejected_score": 0.0,
        })
    return pairs, skipped


def run(recipe: Recipe, policy_dir: str | Path, data_dir: str | Path, out_dir: str | Path) -> dict:
    from posttrain.generation import generate, load

    start = time.perf_counter()
    cfg = recipe.preference
    policy_dir, data_dir, out_dir = Path(policy_dir), Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = read_rows(data_dir / FILES["preference"], "rlvr")
    model, tokenizer = load(str(policy_dir), trust_remote_code=recipe.model.trust_remote_code)
    completions = generate(model, tokenizer, [r["messages"] for r in rows], cfg.max_new_tokens, cfg.batch_size,
                           num_samples=cfg.samples_per_prompt, temperature=cfg.temperature, seed=cfg.seed)
    if cfg.include_reference:  # off-policy: the reference solution joins the on-policy samples
        completions = [samples + [row["solution"]] for samples, row in zip(completions, rows, strict=True)]
    rng = random.Random(cfg.seed)
    pairs, skipped = verifier_pairs(rows, completions, rng)
    rng.shuffle(pairs)
    held = int(len(pairs) * cfg.heldout_fraction)
    write_jsonl(out_dir / "pairs.jsonl", pairs[held:])
    write_jsonl(out_dir / "heldout_pairs.jsonl", pairs[:held])

    def length(side: str) -> float:
        return round(mean(len(p[side][-1]["content"]) for p in pairs), 1) if pairs else 0.0

    report = {"prompts": len(rows), "samples": sum(map(len, completions)), "pairs": len(pairs) - held,
              "heldout_pairs": held, "skipped_no_contrast": skipped, "judge": cfg.judge,
              "chosen_chars": length("chosen"), "rejected_chars": length("rejected")}
    write_json(out_dir / "report.json", report)
    seconds = time.perf_counter() - start
    seal(out_dir, "preference", recipe.digest(), inputs={"policy": policy_dir, "data": data_dir},
         summary=report, seconds=seconds)
    print(f"preference: {report['pairs']} pairs (+{held} held out) from {len(rows)} prompts, "
          f"{skipped} without contrast, in {seconds:.0f}s")
    if not pairs:
        raise RuntimeError("preference: no prompt had both a right and a wrong completion; "
                           "raise samples_per_prompt or temperature")
    return report
