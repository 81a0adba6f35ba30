"""KFP components: one thin Lightweight Python Component per stage.

Each body turns KFP inputs into a recipe and paths, calls `posttrain.stages.<stage>.run`, and leaves its
output in the KFP artifact. The logic lives in `posttrain.stages`; nothing here re-declares a default.
"""
from posttrain.components.stages import (base, data, dpo, eval, gate, plan, preference, preflight, promote, rlvr,
                                        sft)

__all__ = ["base", "data", "dpo", "eval", "gate", "plan", "preference", "preflight", "promote", "rlvr", "sft"]
