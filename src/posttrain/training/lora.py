"""LoRA and QLoRA adapters (PEFT) as stage outputs: train one, save it naming its base, load base + adapter.

A training stage whose recipe section has `lora:` loads its input with `load_for_training` and saves with
`save`; the rest of the pipeline loads any stage output with `load_model`, which merges adapters down to plain
weights, so generation, preference sampling and eval see one kind of model.

An adapter output holds PEFT's files (`adapter_config.json`, `adapter_model.safetensors`), the tokenizer and
`adapter.json`: the base it was trained on (the stage's input artifact: its path and the sha256 of its
manifest) and the bottom of the chain (the full weights under every adapter). An input that is itself an
adapter is merged into its base before the new adapter is made, so a chain base -> SFT adapter -> DPO adapter
loads by merging each adapter in order. A base whose manifest digest differs from the one recorded is refused.

DPO and GRPO need no second copy of the weights for their reference: given a PEFT model and no reference
model, TRL 1.16 keeps a frozen copy of the freshly made (zero) adapter as `ref` and computes reference
log-probabilities with only it active, which is the frozen base.
"""
from __future__ import annotations

import json
import resource
import shutil
from importlib.util import find_spec
from pathlib import Path

from posttrain.recipe import LoRA, Recipe, RecipeError
from posttrain.store import read_manifest

ADAPTER = "adapter.json"
TRAINED = "default"  # PEFT's name for the adapter being trained; TRL adds `ref` beside it


class AdapterBaseMismatch(RuntimeError):
    """An adapter's base is missing, or is not the model (by manifest digest) it was trained on."""


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / ADAPTER).is_file()


def record(path: str | Path) -> dict:
    """The adapter's `adapter.json`: base, root, settings, trainable parameters."""
    return json.loads((Path(path) / ADAPTER).read_text())


def base_dir(path: str | Path, base: str | Path | None = None) -> Path:
    """The directory of an adapter's base, checked against the recorded digest. `base`: where it lies now
    (e.g. a registry download); default: where it lay when the adapter was trained, fetched from the artifact
    store when that was a KFP task's copy of a store object (`from_store`)."""
    wanted = record(path)["base"]
    found = Path(base or wanted["path"])
    try:
        found = found if base else from_store(found, wanted["sha256"])
        digest = read_manifest(found)["sha256"]
    except Exception as exc:  # missing directory or unsealed output
        raise AdapterBaseMismatch(f"{path}: its base {wanted['sha256'][:12]} ({wanted['stage']}) is not at "
                                  f"{found}: {exc}") from None
    if digest != wanted["sha256"]:
        raise AdapterBaseMismatch(f"{path}: trained on base {wanted['sha256'][:12]} ({wanted['stage']}), but "
                                  f"{found} holds {digest[:12]}; an adapter only fits the weights it was trained on")
    return found


# Where a KFP task's launcher puts an input artifact: `s3://b/k` at `/s3/b/k`, and so on (KFP's own table:
# kfp.dsl.types.artifact_types; the library does not import kfp, tests/test_lora.py compares the two).
# KFP's MinIO (`minio://`) speaks S3: read at AWS_ENDPOINT_URL with the task's S3 credentials.
KFP_LOCAL_MOUNTS = {"/gcs/": "gs://", "/s3/": "s3://", "/minio/": "s3://"}


def remote_url(local: str | Path) -> str | None:
    """The artifact store URL of a path where a KFP task finds an input artifact, else None (a local path)."""
    local = str(local)
    for prefix, scheme in KFP_LOCAL_MOUNTS.items():
        if local.startswith(prefix):
            return scheme + local.removeprefix(prefix)
    return None


def from_store(local: str | Path, sha256: str) -> Path:
    """Where an adapter's base is on this machine. On a cluster a task's pod holds only its own inputs: the
    base an earlier task recorded (`/s3/...`, its copy of the store object) is absent here, so it is
    downloaded from the store into the temporary directory, once per digest. Elsewhere: `local` as it is."""
    import tempfile

    import fsspec

    local = Path(local)
    url = remote_url(local)
    if local.exists() or url is None:
        return local
    dest = Path(tempfile.gettempdir()) / "posttrain-bases" / sha256
    if not (dest / "manifest.json").is_file():  # the manifest is written last: a partial copy has none
        fs, root = fsspec.core.url_to_fs(url)
        partial = dest.with_name(f".{sha256}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        fs.get(f"{root}/", str(partial), recursive=True)
        shutil.rmtree(dest, ignore_errors=True)
        partial.rename(dest)
    return dest


def _quantization(cfg: LoRA | None, field: str) -> dict:
    if not cfg or cfg.quantize == "none":
        return {}
    import torch

    if not torch.cuda.is_available() or find_spec("bitsandbytes") is None:
        raise RecipeError(f"{field}.quantize: nf4 needs bitsandbytes on a CUDA GPU; this machine has "
                          f"{'no bitsandbytes' if torch.cuda.is_available() else 'no GPU'}")
    from transformers import BitsAndBytesConfig

    return {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                      bnb_4bit_use_double_quant=True,
                                                      bnb_4bit_compute_dtype=torch.bfloat16)}


def load_model(path: str | Path, trust_remote_code: bool = False, base: str | Path | None = None, **load_kwargs):
    """A stage output as one model: full weights as saved, or an adapter merged onto its (checked) base,
    recursively down its chain. `load_kwargs` go to `from_pretrained` of the full weights at the bottom."""
    from transformers import AutoModelForCausalLM

    if not is_adapter(path):
        return AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code, **load_kwargs)
    from peft import PeftModel

    model = load_model(base_dir(path, base), trust_remote_code, **load_kwargs)
    return PeftModel.from_pretrained(model, str(path)).merge_and_unload()


def load_for_training(recipe: Recipe, stage: str, input_dir: str | Path):
    """The model `stage` trains: its input (merged if an adapter), 4-bit if asked, wrapped in a new LoRA
    adapter when the stage's section has `lora`, else the full weights as the trainer expects them."""
    import torch

    cfg: LoRA | None = getattr(recipe, stage).lora
    # Frozen weights need no fp32 master copy: bf16 on a GPU, where the trainer computes in bf16 anyway
    precision = _quantization(cfg, f"recipe.{stage}.lora") or (
        {"dtype": torch.bfloat16} if cfg and torch.cuda.is_available() else {})
    model = load_model(input_dir, recipe.model.trust_remote_code, **precision)
    if cfg is None:
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if "quantization_config" in precision:  # fp32 norms and output head, input gradients (QLoRA)
        model = prepare_model_for_kbit_training(model)
    # Gradient checkpointing: TRL 1.16's SFT, DPO and GRPO configs turn it on by default, and TRL makes a PEFT
    # model's frozen embeddings pass gradients on to the adapters
    targets = cfg.target_modules if cfg.target_modules == "all-linear" else list(cfg.target_modules)
    config = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets,
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def reset_peak_memory() -> None:
    """Start the stage's peak-memory figure afresh, for a process that runs several stages (benchmarks/direct.py):
    torch's peak on a GPU; on Linux the resident set's high-water mark (`VmHWM`, reset by writing 5 to
    /proc/self/clear_refs)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # not Linux: the figure is the process's peak so far
        pass


def _peak_resident_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # never reset; Linux: KiB


def parameters(model) -> dict:
    """Trainable and total parameters, and the stage's peak memory (GPU: allocated by torch; CPU: resident set,
    since `reset_peak_memory`), for the stage summary: what LoRA saves against full fine-tuning."""
    import torch

    trainable = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad)
    total = sum(p.numel() for n, p in model.named_parameters() if ".ref." not in n)  # TRL's copy: not the model's
    if torch.cuda.is_available():
        peak, where = torch.cuda.max_memory_allocated() / 2**20, "cuda"
    else:
        peak, where = _peak_resident_mb(), "cpu"
    return {"trainable_parameters": trainable, "parameters": total, "peak_memory_mb": round(peak, 1),
            "peak_memory_of": where}


def save(trainer, out_dir: str | Path, input_dir: str | Path | None = None) -> dict:
    """Save what the stage trained into `out_dir`: full weights, or the adapter (with `adapter.json` naming its
    base when `input_dir` is given, else see `name_base`). Every rank calls it (ZeRO-3 gathers from all);
    returns the summary's parameter and memory figures."""
    from accelerate.utils import is_peft_model

    out_dir = Path(out_dir)
    figures = parameters(trainer.model)
    trainer.save_model(str(out_dir))
    if not trainer.is_world_process_zero():
        return figures
    if is_peft_model(trainer.model):
        for name in trainer.model.peft_config:  # TRL's frozen reference copy is not part of the output
            if name != TRAINED:
                shutil.rmtree(out_dir / name, ignore_errors=True)
    return name_base(trainer.model, out_dir, input_dir) if input_dir else figures


def name_base(model, out_dir: str | Path, input_dir: str | Path) -> dict:
    """Write `adapter.json` beside a saved adapter: its base (the stage's input) by manifest digest, and the
    full weights at the bottom of the chain. Returns the parameter and memory figures; full weights: only those."""
    from accelerate.utils import is_peft_model

    out_dir, input_dir = Path(out_dir), Path(input_dir)
    figures = parameters(model)
    if not is_peft_model(model):
        return figures
    manifest = read_manifest(input_dir)
    root = record(input_dir)["root"] if is_adapter(input_dir) else {"path": str(input_dir),
                                                                    "sha256": manifest["sha256"]}
    config = model.peft_config[TRAINED]
    (out_dir / ADAPTER).write_text(json.dumps({
        "base": {"path": str(input_dir), "sha256": manifest["sha256"], "stage": manifest["stage"],
                 "adapter": is_adapter(input_dir)},
        "root": root,  # the full weights at the bottom of the chain
        "rank": config.r, "alpha": config.lora_alpha,
        "quantized": bool(getattr(model.get_base_model(), "is_loaded_in_4bit", False)),
        **figures,
    }, indent=2) + "\n")
    return figures


def lineage(path: str | Path) -> dict | None:
    """For a registry entry: the adapter's base and root digests, or None for full weights."""
    if not is_adapter(path):
        return None
    found = record(path)
    return {"base_sha256": found["base"]["sha256"], "base_stage": found["base"]["stage"],
            "base_is_adapter": found["base"]["adapter"], "root_sha256": found["root"]["sha256"],
            "adapter_sha256": read_manifest(path)["sha256"], "rank": found["rank"], "alpha": found["alpha"]}


def materialise(path: str | Path, dest: str | Path, trust_remote_code: bool = False) -> Path:
    """The merged model of an adapter saved as full weights in `dest` (for tools that take a directory:
    lm-eval, a vLLM engine for a chain of adapters)."""
    from transformers import AutoTokenizer

    dest = Path(dest)
    load_model(path, trust_remote_code).save_pretrained(dest)
    AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code).save_pretrained(dest)
    return dest


def vllm_plan(path: str | Path) -> dict:
    """How vLLM serves a stage output: an adapter on full weights as a LoRA request on its base's engine
    (`enable_lora`, the adapter's rank), anything deeper by merging first (`merge`: True)."""
    if not is_adapter(path):
        return {"model": str(path), "merge": False}
    found = record(path)
    if found["base"]["adapter"]:  # vLLM applies one adapter to full weights
        return {"model": None, "merge": True}
    return {"model": str(base_dir(path)), "merge": False, "max_lora_rank": found["rank"],
            "lora": {"lora_name": Path(path).name or "adapter", "lora_int_id": 1, "lora_path": str(path)}}
