"""Completions/s of the batched generator against one-at-a-time `generate`, same prompts, same run.

    python benchmarks/generate.py [--prompts 128] [--model DIR]

Without --model it builds the tiny model (untrained: the length of each completion is fixed by
max_new_tokens with EOS suppressed, so both sides do the same work).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time



from posttrain.data.arithmetic import problems
from posttrain.generation import generate, load
from posttrain.models.tiny import build
from posttrain.recipe import TinyModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    rows = list(problems(0, args.prompts, 3, ["add", "sub"], ["en", "de", "fr", "es", "it"]))
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model or tmp
        if args.model is None:
            build((r["messages"][0]["content"] for r in rows), TinyModel(), tmp)
        model, tokenizer = load(path)
        model.generation_config.min_new_tokens = args.max_new_tokens  # equal work on both sides
        conversations = [r["messages"] for r in rows]

        start = time.perf_counter()
        generate(model, tokenizer, conversations, args.max_new_tokens, batch_size=1)
        baseline = args.prompts / (time.perf_counter() - start)

        start = time.perf_counter()
        generate(model, tokenizer, conversations, args.max_new_tokens, batch_size=args.batch_size)
        ours = args.prompts / (time.perf_counter() - start)
    print(json.dumps({"benchmark": "generate", "ours": round(ours, 2), "baseline": round(baseline, 2),
                      "unit": "completions/s", "ratio": round(ours / baseline, 2),
                      "prompts": args.prompts, "max_new_tokens": args.max_new_tokens,
                      "batch_size": args.batch_size}))


if __name__ == "__main__":
    main()
