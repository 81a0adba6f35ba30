"""The model a recipe trains, as an architecture: its config (offline) and its parameter counts (meta device).

The plan never downloads anything. `recipe.model.base` is "tiny" (the shape in `recipe.model.tiny`), a local
directory holding a config.json, or one of the Hub names below whose config ships in `configs/` (written from
the models' published config.json). Anything else is an error naming `recipe.model.base`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from posttrain.recipe import Recipe, RecipeError

# Hub name -> shipped config. Tülu 3's checkpoints are Llama-3.1 with the same shapes (their vocabulary adds
# no rows: Tülu's chat template uses the base tokenizer's reserved special tokens).
SHIPPED = {
    "meta-llama/Llama-3.1-8B": "llama-3.1-8b.json",
    "meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b.json",
    "allenai/Llama-3.1-Tulu-3-8B-SFT": "llama-3.1-8b.json",
    "allenai/Llama-3.1-Tulu-3-8B-DPO": "llama-3.1-8b.json",
    "allenai/Llama-3.1-Tulu-3-8B": "llama-3.1-8b.json",
    "meta-llama/Llama-3.1-70B": "llama-3.1-70b.json",
    "meta-llama/Llama-3.1-70B-Instruct": "llama-3.1-70b.json",
}


@dataclass(frozen=True)
class Architecture:
    name: str  # what the recipe called it
    config: dict  # config.json's fields
    parameters: int  # all of them (tied embeddings counted once)
    largest_layer: int  # parameters of the largest module owning parameters directly (DeepSpeed's term)
    # every linear layer but the output head: (module name, in features, out features). These are what
    # "all-linear" LoRA wraps and what NF4 quantises (bitsandbytes keeps the output head in 16 bits).
    linears: tuple[tuple[str, int, int], ...] = ()

    def adapter_parameters(self, rank: int, targets) -> int:
        """Parameters of a LoRA adapter of `rank` on `targets` ("all-linear", or module-name suffixes as PEFT
        matches them): rank x (in + out) per wrapped layer."""
        return sum(rank * (i + o) for name, i, o in self.linears
                   if targets == "all-linear" or any(name == t or name.endswith(f".{t}") for t in targets))

    @property
    def linear_parameters(self) -> int:
        return sum(i * o for _, i, o in self.linears)

    @property
    def layers(self) -> int:
        return self.config["num_hidden_layers"]

    @property
    def kv_bytes_per_token(self) -> int:
        """vLLM's KV cache per token, bf16: 2 (K and V) x layers x KV heads x head size x 2 bytes."""
        c = self.config
        head_dim = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
        return 2 * c["num_hidden_layers"] * c.get("num_key_value_heads", c["num_attention_heads"]) * head_dim * 2

    @property
    def max_positions(self) -> int:
        return self.config["max_position_embeddings"]


def config_of(recipe: Recipe) -> dict:
    """config.json of `recipe.model.base`, without the network."""
    base = recipe.model.base
    if base == "tiny":
        t = recipe.model.tiny  # as posttrain.models.tiny.build makes it (its vocabulary is at most vocab_size)
        return {"model_type": "llama", "hidden_size": t.hidden_size, "intermediate_size": t.intermediate_size,
                "num_hidden_layers": t.num_layers, "num_attention_heads": t.num_heads,
                "num_key_value_heads": t.num_heads, "vocab_size": t.vocab_size,
                "max_position_embeddings": t.max_positions, "tie_word_embeddings": True}
    local = Path(base) / "config.json"
    if local.is_file():
        return json.loads(local.read_text())
    if base in SHIPPED:
        return json.loads((resources.files("posttrain.plan") / "configs" / SHIPPED[base]).read_text())
    raise RecipeError(f"recipe.model.base: {base!r} is neither a directory with a config.json nor a model whose "
                      f"config ships with posttrain ({', '.join(sorted(SHIPPED))}); the plan runs offline")


def build(config: dict, layers: int | None = None):
    """The transformers model for `config` (optionally with fewer decoder layers), uninitialised: call it under
    the meta device or a FakeTensorMode."""
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = {k: v for k, v in config.items() if k not in ("architectures", "model_type", "torch_dtype")}
    if layers is not None:
        fields["num_hidden_layers"] = layers
    cfg = AutoConfig.for_model(config["model_type"], **fields)
    cfg._attn_implementation = "sdpa"  # what the trainers use on a GPU without flash-attn
    return AutoModelForCausalLM.from_config(cfg)


@lru_cache(maxsize=16)
def _count(config_json: str) -> tuple[int, int, tuple]:
    import torch

    with torch.device("meta"):
        model = build(json.loads(config_json))
    total = sum(p.numel() for p in model.parameters())
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    head = model.get_output_embeddings()
    linears = tuple((name, m.in_features, m.out_features) for name, m in model.named_modules()
                    if isinstance(m, torch.nn.Linear) and m is not head)
    return total, largest, linears


def architecture(recipe: Recipe) -> Architecture:
    config = config_of(recipe)
    total, largest, linears = _count(json.dumps(config, sort_keys=True))
    return Architecture(recipe.model.base, config, total, largest, linears)
