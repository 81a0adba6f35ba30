"""Benchmarks beyond the synthetic held-out set: each loads items and scores completions with a verifier."""
