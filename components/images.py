"""The one place that maps a stage to its container image. Releases pin these by digest."""

REGISTRY = "ghcr.io/posttrain"
VERSION = "0.1.0"

IMAGES = {
    stage: f"{REGISTRY}/{stage}:{VERSION}"
    for stage in ("data", "sft", "preference", "dpo", "rlvr", "eval", "promote")
}
