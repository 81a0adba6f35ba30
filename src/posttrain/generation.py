"""Batched generation behind one call: vLLM where there is a GPU and vLLM is installed (the gpu image),
transformers `generate` (batched, length-sorted) everywhere else. Same prompts, same truncation, same output."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class VLLMModel:
    """A vLLM engine standing where a transformers model would (see `load`)."""

    engine: object
    lora_request: object = None  # vllm.lora.request.LoRARequest: the adapter every request applies (lora.vllm_plan)


def vllm_wanted() -> bool:
    """vLLM when CUDA and vLLM are both present, unless POSTTRAIN_GENERATION=transformers says otherwise."""
    if os.environ.get("POSTTRAIN_GENERATION") == "transformers" or not torch.cuda.is_available():
        return False
    from importlib.util import find_spec

    return find_spec("vllm") is not None


def load(path: str, trust_remote_code: bool = False):
    """Model (or vLLM engine) and tokenizer from a `save_pretrained` directory or Hub name, for generation.
    An adapter output (posttrain.training.lora) is merged onto its base, or served by vLLM as a LoRA."""
    from transformers import AutoTokenizer

    from posttrain.training import lora

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if vllm_wanted():
        return _load_vllm(path, trust_remote_code), tokenizer
    from posttrain.training.devices import for_inference

    model = for_inference(lora.load_model(path, trust_remote_code))
    model.eval()
    return model, tokenizer


def _load_vllm(path: str, trust_remote_code: bool) -> VLLMModel:
    import tempfile

    from vllm import LLM
    from vllm.lora.request import LoRARequest

    from posttrain.training import lora

    plan = lora.vllm_plan(path)
    if plan["merge"]:  # a chain of adapters: vLLM applies one, so serve the merged weights
        path = str(lora.materialise(path, tempfile.mkdtemp(prefix="merged-"), trust_remote_code))
        plan = lora.vllm_plan(path)
    engine_args = {"enable_lora": True, "max_lora_rank": plan["max_lora_rank"]} if "lora" in plan else {}
    engine = LLM(model=plan["model"], trust_remote_code=trust_remote_code,
                 tensor_parallel_size=torch.cuda.device_count(), **engine_args)
    return VLLMModel(engine, LoRARequest(**plan["lora"]) if "lora" in plan else None)


def release(model) -> None:
    """Free a model's accelerator memory before the next one loads: vLLM keeps its engine's memory (and its
    distributed state) until told, and a second engine in the same process then runs out of memory."""
    import gc

    if isinstance(model, VLLMModel):
        try:
            from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

            destroy_model_parallel()
            destroy_distributed_environment()
        except ImportError:  # the names moved between vLLM releases; the process-per-model path does not need them
            pass
        model.engine = None
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _generate_vllm(model: VLLMModel, encoded: list[list[int]], max_new_tokens: int, num_samples: int,
                   temperature: float, seed: int) -> list[list[str]]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(n=num_samples, temperature=temperature, max_tokens=max_new_tokens, seed=seed)
    outputs = model.engine.generate([TokensPrompt(prompt_token_ids=ids) for ids in encoded], params,
                                    lora_request=model.lora_request)
    return [[choice.text for choice in output.outputs] for output in outputs]


@torch.inference_mode()
def generate(model, tokenizer, conversations: Sequence[list[dict]], max_new_tokens: int, batch_size: int,
             num_samples: int = 1, temperature: float = 0.0, seed: int = 0,
             max_prompt_tokens: int | None = None) -> list[list[str]]:
    """`num_samples` completions per conversation (greedy when temperature is 0), in input order.

    Prompts are sorted by length before batching so that little padding is computed.
    """
    prompts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if max_prompt_tokens:  # keep the end of long prompts: the question and the generation prompt
        encoded = [ids[-max_prompt_tokens:] for ids in encoded]
    if isinstance(model, VLLMModel):  # vLLM schedules its own batches
        return _generate_vllm(model, encoded, max_new_tokens, num_samples, temperature, seed)
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    results: list[list[str]] = [[] for _ in prompts]
    torch.manual_seed(seed)
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0} if temperature > 0 else {"do_sample": False}
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        inputs = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt", padding_side="left")
        inputs = {key: value.to(model.device) for key, value in inputs.items()}
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            num_return_sequences=num_samples,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **sampling,
        )
        texts = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        for k, index in enumerate(batch):
            results[index] = texts[k * num_samples : (k + 1) * num_samples]
    return results
