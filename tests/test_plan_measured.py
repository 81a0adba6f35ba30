"""The plan's traced micro-step against the same step measured another way: real tensors in a subprocess, its
peak RSS growth as the kernel counts it (tests/rss_step.py). fp32, as the CPU stages run.

Measured here (2 loaded cores, 2026-12-06): tiny 0.80, ~100M Llama 0.82 of the process's growth in fp32 (bf16:
0.74 and 0.83): the trace misses what CPU kernels allocate below the dispatcher and the allocator's slack,
which is what the plan's headroom (recipe.cluster.memory_headroom) is for.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from posttrain.plan import trace

HERE = Path(__file__).parent
TINY = dict(model_type="llama", hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=4, vocab_size=512, max_position_embeddings=256, tie_word_embeddings=True)
LLAMA_100M = dict(model_type="llama", hidden_size=768, intermediate_size=2048, num_hidden_layers=8,
                  num_attention_heads=12, num_key_value_heads=12, vocab_size=32000, max_position_embeddings=2048,
                  tie_word_embeddings=False)  # 110M parameters


@pytest.mark.e2e
@pytest.mark.parametrize("config, batch, length", [(TINY, 16, 256), (LLAMA_100M, 2, 512)], ids=["tiny", "llama-100m"])
def test_traced_peak_agrees_with_the_process_peak_rss(config, batch, length):
    estimate = trace.micro_step(config, trace.TRAIN, batch, length, "float32", with_gradients=True)
    out = subprocess.run([sys.executable, str(HERE / "rss_step.py"), json.dumps(config), str(batch), str(length),
                          "float32"], capture_output=True, text=True, timeout=600, check=True)
    measured = json.loads(out.stdout)["peak_growth"]
    assert estimate == pytest.approx(measured, rel=0.2), \
        f"traced {estimate / 2**20:.0f} MiB, RSS {measured / 2**20:.0f} MiB"


def test_scaling_two_layers_equals_tracing_all_of_them():
    config = {**LLAMA_100M, "num_hidden_layers": 4}
    scaled = trace.micro_step(config, trace.TRAIN, 1, 256)
    assert scaled == trace._traced(config, 4, trace.TRAIN, 1, 256)
