"""Per-device memory of each stage, phase by phase: formulas for the model states, a trace for activations.

Formulas (bytes, P parameters, N = GPUs x nodes, L = parameters of the largest layer):
- Model states under ZeRO, as DeepSpeed's estimators compute them without offload
  (`deepspeed.runtime.zero.stage_1_and_2.estimate_zero2_model_states_mem_needs`: 2P + 18P/N;
  `deepspeed.runtime.zero.stage3.estimate_zero3_model_states_mem_needs`: 4L + 18P/N; tests compare).
  Split as DeepSpeed's comment splits the 18: bf16 weights (2P, or 2P/N + 4L gathered under ZeRO-3),
  gradients (bf16 + fp32), optimizer (fp32 master weights + Adam's two moments, 12P/N).
  Without ZeRO (data-parallel, or PPO's one process): fp32 weights, gradients, Adam: 4P + 4P + 8P.
- LoRA (`lora:` in the stage's section, posttrain.training.lora): the base is frozen: bf16 weights (2P, sharded
  like ZeRO-3's), no gradients, no optimizer. With `quantize: nf4` (QLoRA) every linear layer but the output
  head is stored in 4 bits with double quantisation (bitsandbytes: 0.5 byte + one 8-bit absmax per 64 weights +
  one fp32 constant per 256 absmaxes), and PEFT's `prepare_model_for_kbit_training` upcasts the rest (embeddings,
  head, norms) to fp32. The adapter (A = rank x (in + out) per wrapped layer) trains in fp32: 4A weights,
  4A gradients, 8A Adam. DPO and GRPO keep no reference copy (TRL switches the adapter off). Activations are
  traced as for full fine-tuning: the adapters read the same saved layer inputs.
- Reference model (GRPO with beta > 0): bf16, 2P, sharded like the policy under ZeRO-3 (TRL prepares it with
  the policy's ZeRO stage 3, else unsharded). DPO precomputes reference log-probs and keeps no reference.
- vLLM (colocated): it takes `vllm_gpu_memory_utilization` of the GPU; inside that it needs its weights (2P)
  and the KV cache of at least one sequence of `vllm_max_model_length` tokens (vLLM refuses to start
  otherwise): 2 x layers x KV heads x head size x 2 bytes per token. With sleep mode it frees both while the
  trainer steps.
Measured (posttrain.plan.trace): activations, temporaries and logits of one micro-step; the DPO margin pass.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from posttrain.plan import trace
from posttrain.plan.architecture import Architecture
from posttrain.recipe import LoRA, Recipe

GiB = 2**30
PARTS = ("weights", "gradients", "optimizer", "reference", "value model", "vLLM / KV cache", "activations",
         "margin pass")


@dataclass
class Phase:
    name: str  # a moment of the stage with its own peak, e.g. "training step"
    parts: dict[str, float]  # PARTS -> bytes per device
    fields: tuple[str, ...]  # recipe fields that change it

    @property
    def total(self) -> float:
        return sum(self.parts.values())


@dataclass
class Memory:
    capacity: float  # bytes of one accelerator
    headroom: float  # bytes kept free
    phases: list[Phase] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # refusals, each naming fields and numbers
    notes: list[str] = field(default_factory=list)

    @property
    def peak(self) -> Phase | None:
        return max(self.phases, key=lambda p: p.total) if self.phases else None

    def check(self, stage: str) -> None:
        for phase in self.phases:
            need = phase.total + self.headroom
            if need > self.capacity:
                self.problems.append(
                    f"{stage}: {phase.name} needs {need / GiB:.1f} GiB of {self.capacity / GiB:.0f} per GPU "
                    f"({_largest(phase)}, {self.headroom / GiB:.1f} headroom); change {', '.join(phase.fields)}")


def _largest(phase: Phase) -> str:
    parts = sorted(((v, k) for k, v in phase.parts.items() if v), reverse=True)[:3]
    return ", ".join(f"{k} {v / GiB:.1f}" for v, k in parts)


NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # per quantised weight: 4 bits, 8-bit absmax per 64, fp32 per 256 of those


def model_states(arch: Architecture, zero: str, world: int, lora: LoRA | None = None) -> dict[str, float]:
    """Weights, gradients and optimizer state per device for AdamW in bf16 mixed precision; with `lora`, of a
    frozen (optionally NF4) base and an fp32 adapter."""
    p, n = arch.parameters, world
    if lora is not None:
        adapter = arch.adapter_parameters(lora.rank, lora.target_modules)
        if lora.quantize == "nf4":
            frozen = NF4_BYTES * arch.linear_parameters + 4 * (p - arch.linear_parameters)
        else:
            frozen = 2 * p / n + 4 * arch.largest_layer if zero == "zero3" else 2 * p
        shard = n if zero in ("zero2", "zero3") else 1
        return {"weights": frozen + 4 * adapter, "gradients": 4 * adapter / shard, "optimizer": 8 * adapter / shard}
    if zero == "zero3":
        return {"weights": 2 * p / n + 4 * arch.largest_layer, "gradients": 4 * p / n, "optimizer": 12 * p / n}
    if zero == "zero2":
        return {"weights": 2 * p, "gradients": 6 * p / n, "optimizer": 12 * p / n}
    return {"weights": 4 * p, "gradients": 4 * p, "optimizer": 8 * p}


def _activations(arch: Architecture, cfg, batch: int, length: int) -> float:
    kind = trace.TRAIN_CHECKPOINTED if cfg.gradient_checkpointing else trace.TRAIN
    return trace.micro_step(arch.config, kind, batch, min(length, arch.max_positions))


def _world(recipe: Recipe, stage: str) -> int:
    res = getattr(recipe.cluster, stage)
    return max(1, res.gpus) * res.nodes


def sft(recipe: Recipe, arch: Architecture, mem: Memory) -> None:
    cfg = recipe.sft
    parts = model_states(arch, cfg.deepspeed, _world(recipe, "sft"), cfg.lora)
    parts["activations"] = _activations(arch, cfg, cfg.batch_size, cfg.max_length)
    mem.phases.append(Phase("training step", parts, ("recipe.sft.batch_size", "recipe.sft.max_length",
                                                     "recipe.sft.gradient_checkpointing", "recipe.sft.deepspeed",
                                                     "recipe.cluster.sft.gpus", "recipe.cluster.sft.nodes")))


def dpo(recipe: Recipe, arch: Architecture, mem: Memory) -> None:
    cfg = recipe.dpo
    states = model_states(arch, cfg.deepspeed, _world(recipe, "dpo"), cfg.lora)
    # chosen and rejected go through the model as one batch of 2 x batch_size sequences
    mem.phases.append(Phase("training step", {**states, "activations": _activations(arch, cfg, 2 * cfg.batch_size,
                                                                                      cfg.max_length)},
                            ("recipe.dpo.batch_size", "recipe.dpo.max_length", "recipe.dpo.gradient_checkpointing",
                             "recipe.dpo.deepspeed", "recipe.cluster.dpo.gpus")))
    # rank 0 scores the held-out pairs after training, next to the trainer's states, which are still allocated:
    # on several GPUs with a whole bf16 copy of the trained model it loads (the trainer's is sharded), on one GPU
    # with the trainer's own model
    margin = trace.micro_step(arch.config, trace.LOGPROBS, cfg.margin_batch_size,
                              min(cfg.max_length, arch.max_positions))
    fields = ("recipe.dpo.margin_batch_size", "recipe.dpo.max_length")
    copy = 2 * arch.parameters if _world(recipe, "dpo") > 1 else 0
    mem.phases.append(Phase("margin pass (after training, rank 0)", {**states, "reference": copy,
                                                                      "margin pass": margin}, fields))
    mem.notes.append("dpo: reference log-probs are precomputed (no reference model on the GPU)"
                     + ("; the margin pass's reference column is the whole trained model rank 0 loads to score "
                        "held-out pairs" if copy else ""))


def rlvr(recipe: Recipe, arch: Architecture, mem: Memory) -> None:
    cfg = recipe.rlvr
    if cfg.algorithm == "ppo":
        return _ppo(recipe, arch, mem)
    from posttrain.training.rlvr_batches import derive

    world = _world(recipe, "rlvr")
    states = model_states(arch, cfg.deepspeed, world, cfg.lora)
    if cfg.beta and cfg.lora is None:  # with an adapter TRL's reference is the base: the adapter switched off
        states["reference"] = 2 * arch.parameters / (world if cfg.deepspeed == "zero3" else 1)
    length = cfg.vllm_max_model_length or 2 * cfg.max_completion_length  # prompt + completion
    step = {**states, "activations": _activations(arch, cfg, derive(cfg, world).per_device, length)}
    fields = ("recipe.rlvr.gradient_accumulation_steps", "recipe.rlvr.gradient_checkpointing",
              "recipe.rlvr.deepspeed", "recipe.rlvr.vllm_enable_sleep_mode",
              "recipe.rlvr.vllm_gpu_memory_utilization", "recipe.cluster.rlvr.gpus")
    if cfg.vllm == "off" or not recipe.cluster.rlvr.gpus:
        mem.phases.append(Phase("training step", step, fields))
        return
    if cfg.vllm_mode == "server":
        mem.notes.append(f"rlvr: vLLM runs on its own GPUs at {cfg.vllm_server_url} (not planned here)")
        mem.phases.append(Phase("training step", step, fields))
        return
    share = cfg.vllm_gpu_memory_utilization * mem.capacity
    max_len = cfg.vllm_max_model_length or arch.max_positions
    need = 2 * arch.parameters + arch.kv_bytes_per_token * max_len
    if need > share:
        mem.problems.append(
            f"rlvr: GRPO's vLLM needs {need / GiB:.1f} GiB for its weights ({2 * arch.parameters / GiB:.1f}) and the "
            f"KV cache of one {max_len}-token sequence ({arch.kv_bytes_per_token * max_len / GiB:.1f}) but gets "
            f"{share / GiB:.1f} GiB ({cfg.vllm_gpu_memory_utilization} of {mem.capacity / GiB:.0f}); change "
            "recipe.rlvr.vllm_max_model_length, recipe.rlvr.vllm_gpu_memory_utilization")
    mem.phases.append(Phase("rollout (vLLM generating)", {**states, "vLLM / KV cache": share}, fields))
    if not cfg.vllm_enable_sleep_mode:
        step["vLLM / KV cache"] = share
    mem.phases.append(Phase("training step" + ("" if cfg.vllm_enable_sleep_mode else " (vLLM awake)"), step, fields))


def _ppo(recipe: Recipe, arch: Architecture, mem: Memory) -> None:
    cfg = recipe.rlvr
    states = model_states(arch, "none", 1)  # posttrain.training.ppo: one process, no ZeRO
    states["value model"] = 16 * arch.parameters  # a second trained model: fp32 weights, gradients, Adam
    states["reference"] = 2 * arch.parameters
    states["activations"] = _activations(arch, cfg, 1, 2 * cfg.max_completion_length)
    mem.phases.append(Phase("PPO step (one process, one GPU, no sharding)", states,
                            ("recipe.rlvr.algorithm (grpo shards over the stage's GPUs)",)))


def inference(recipe: Recipe, arch: Architecture, mem: Memory, stage: str, sequences: int, tokens: int,
              fields: tuple[str, ...]) -> None:
    """A stage that only generates: bf16 weights and the KV cache of `sequences` of `tokens`."""
    kv = arch.kv_bytes_per_token * sequences * min(tokens, arch.max_positions)
    mem.phases.append(Phase("generation", {"weights": 2 * arch.parameters, "vLLM / KV cache": kv}, fields))
