"""PPO's checkpoint files, in the trainer's layout (`checkpoint-N`, sealed by `Checkpointing.saved` with the
`COMPLETED` marker, so `latest_complete` picks the newest whole one): policy and value model (safetensors),
optimizer and schedule (loaded with `weights_only`), the sampling RNGs and the log so far. When to save,
sealing, the remote copy and resuming are the shared `training.trainer.Checkpointing`'s."""
from __future__ import annotations

import json
from pathlib import Path

import torch


def save(directory: Path, step: int, parts: dict, history: list[dict]) -> Path:
    """Write `checkpoint-<step>` under `directory`: `parts` (policy, critic, optimizer, schedule, rng) and the log."""
    from safetensors.torch import save_file, save_model

    path = Path(directory) / f"checkpoint-{step}"
    path.mkdir(parents=True, exist_ok=True)
    save_model(parts["policy"], str(path / "policy.safetensors"))  # handles tied embeddings
    save_model(parts["critic"], str(path / "critic.safetensors"))
    torch.save({"optimizer": parts["optimizer"].state_dict(), "schedule": parts["schedule"].state_dict()},
               path / "optimizer.pt")
    version, internal, gauss = parts["rng"].getstate()
    (path / "state.json").write_text(json.dumps({"step": step, "history": history,
                                                 "python_rng": [version, list(internal), gauss]}))
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng |= {f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    save_file(rng, str(path / "rng.safetensors"))
    return path


def load(checkpoint: Path, parts: dict) -> dict:
    """Restore `parts` from `checkpoint`; returns its state (`step`, `history`)."""
    from safetensors.torch import load_file, load_model

    load_model(parts["policy"], str(checkpoint / "policy.safetensors"))
    load_model(parts["critic"], str(checkpoint / "critic.safetensors"))
    state = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    parts["optimizer"].load_state_dict(state["optimizer"])
    parts["schedule"].load_state_dict(state["schedule"])
    meta = json.loads((checkpoint / "state.json").read_text())
    version, internal, gauss = meta["python_rng"]
    parts["rng"].setstate((version, tuple(internal), gauss))
    rng = load_file(str(checkpoint / "rng.safetensors"))
    torch.set_rng_state(rng["cpu"])
    if torch.cuda.is_available():
        torch.cuda.set_rng_state_all([rng[f"cuda{i}"] for i in range(torch.cuda.device_count())])
    return meta
