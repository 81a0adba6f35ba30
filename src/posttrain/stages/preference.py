"""preference stage: on-policy completions judged into chosen/rejected pairs (Tülu's preference format), mixed
with the off-policy pairs of the recipe's `kind: preference` sources, as Tülu 3 mixed both.

Writes `pairs.jsonl` for training and `heldout_pairs.jsonl` for measuring the DPO margin, plus
`report.json` with pair statistics.
"""
from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from statistics import mean

from posttrain import sandbox
from posttrain.data.formats import FILES, read_rows
from posttrain.recipe import Recipe
from posttrain.store import finished, seal, write_json, write_jsonl


def make_judge(recipe: Recipe):
    from posttrain import judges

    cfg = recipe.preference
    if cfg.judge == "verifier":
        return judges.verifier_judge
    if cfg.judge == "reward_model":
        return judges.RewardModelJudge(cfg.reward_model, recipe.model.trust_remote_code)
    return judges.LLMJudge(cfg.llm_url, cfg.llm_model, cfg.api_key_env)


def pairs_from_scores(row: dict, samples: list[str], scores: list[float | None], rng: random.Random) -> dict | None:
    """chosen = the best-scored completion, rejected = a random one scored strictly lower; None on a tie."""
    scored = [(s, c) for c, s in zip(samples, scores, strict=True) if s is not None]
    if not scored:
        return None
    best = max(s for s, _ in scored)
    lower = [(s, c) for s, c in scored if s < best]
    if not lower:
        return None
    chosen = rng.choice([c for s, c in scored if s == best])
    rejected_score, rejected = rng.choice(lower)
    prompt = row["messages"]
    return {"prompt": prompt[-1]["content"],
            "chosen": prompt + [{"role": "assistant", "content": chosen}],
            "rejected": prompt + [{"role": "assistant", "content": rejected}],
            "chosen_score": best, "rejected_score": rejected_score}


def judge_pairs(judge, rows: list[dict], completions: list[list[str]], rng: random.Random) -> tuple[list[dict], int]:
    pairs, skipped = [], 0
    for row, samples in zip(rows, completions, strict=True):
        pair = pairs_from_scores(row, samples, judge(row, samples), rng)
        if pair is None:
            skipped += 1
        else:
            pairs.append(pair)
    return pairs, skipped


def source_pairs(data_dir: Path) -> list[dict]:
    """The data stage's pairs from `kind: preference` sources (absent in artifacts older than that file)."""
    path = data_dir / FILES["preference_pairs"]
    return read_rows(path, "preference") if path.exists() else []


def run(recipe: Recipe, policy_dir: str | Path, data_dir: str | Path, out_dir: str | Path) -> dict:
    from posttrain.generation import generate, load

    start = time.perf_counter()
    cfg = recipe.preference
    policy_dir, data_dir, out_dir = Path(policy_dir), Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if done := finished(out_dir, "preference", recipe.digest(), {"policy": policy_dir, "data": data_dir}):
        return done["summary"]
    rows = read_rows(data_dir / FILES["preference"], "rlvr")
    completions, pairs, skipped, judge = [], [], 0, None
    rng = random.Random(recipe.seed_for("preference"))
    sandbox.use(recipe.sandbox)  # the verifier judge runs code rows' programs
    if rows:  # prompts to sample on; a recipe may bring all its pairs from sources instead
        model, tokenizer = load(str(policy_dir), trust_remote_code=recipe.model.trust_remote_code)
        completions = generate(model, tokenizer, [r["messages"] for r in rows], cfg.max_new_tokens, cfg.batch_size,
                               num_samples=cfg.samples_per_prompt, temperature=cfg.temperature, seed=recipe.seed_for("preference"))
        if cfg.include_reference:  # off-policy: the reference solution joins the on-policy samples
            completions = [samples + [row["solution"]] for samples, row in zip(completions, rows, strict=True)]
        judge = make_judge(recipe)
        pairs, skipped = judge_pairs(judge, rows, completions, rng)
    pairs = [p | {"origin": "on_policy"} for p in pairs] + [p | {"origin": "source"} for p in source_pairs(data_dir)]
    if not pairs:  # before sealing: a sealed stage is skipped as finished on rerun
        raise RuntimeError("preference: no pairs: no prompt had both a right and a wrong completion and no "
                           "kind: preference source gave pairs; raise samples_per_prompt or temperature")
    rng.shuffle(pairs)
    held = int(len(pairs) * cfg.heldout_fraction)
    write_jsonl(out_dir / "pairs.jsonl", pairs[held:])
    write_jsonl(out_dir / "heldout_pairs.jsonl", pairs[:held])

    def length(side: str) -> float:
        return round(mean(len(p[side][-1]["content"]) for p in pairs), 1) if pairs else 0.0

    scored = [p for p in pairs if "chosen_score" in p]  # source pairs carry no scores of ours
    report = {"prompts": len(rows), "samples": sum(map(len, completions)), "pairs": len(pairs) - held,
              "heldout_pairs": held, "skipped_no_contrast": skipped, "judge": cfg.judge,
              "by_origin": dict(Counter(p["origin"] for p in pairs)),
              "unparsable_judgements": getattr(judge, "unparsable", 0),
              "mean_margin": round(mean(p["chosen_score"] - p["rejected_score"] for p in scored), 3) if scored else 0.0,
              "chosen_chars": length("chosen"), "rejected_chars": length("rejected")}
    write_json(out_dir / "report.json", report)
    seconds = time.perf_counter() - start
    seal(out_dir, "preference", recipe.digest(), inputs={"policy": policy_dir, "data": data_dir},
         summary=report, seconds=seconds)
    print(f"preference: {report['pairs']} pairs (+{held} held out) from {len(rows)} prompts, "
          f"{skipped} without contrast, in {seconds:.0f}s")
    return report
