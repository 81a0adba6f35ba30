# Every stage image, built from the two Dockerfiles. Run from the repository root:
#   docker buildx bake -f images/docker-bake.hcl            # build all, tag ${REGISTRY}/<image>:${VERSION}
#   VERSION=0.2.0 docker buildx bake -f images/docker-bake.hcl --push
# One target per image of posttrain.stage_table, tagged as components/images.py names it; the CPU or GPU
# Dockerfile as the table's `accelerator` says (tests/test_images.py checks all three).

variable "REGISTRY" {
  default = "ghcr.io/posttrain"
}

variable "VERSION" {
  default = "0.1.0"
}

group "default" {
  targets = ["data", "sft", "preference", "dpo", "rlvr", "eval", "promote"]
}

target "_cpu" {
  context    = "."
  dockerfile = "images/cpu/Dockerfile"
  platforms  = ["linux/amd64"]
}

# The GPU stages share one Dockerfile: buildx builds it once and tags it per stage, so each stage keeps its own
# image reference (and may diverge later) while a release pushes one set of layers.
target "_gpu" {
  context    = "."
  dockerfile = "images/gpu/Dockerfile"
  platforms  = ["linux/amd64"]
}

target "data" {
  inherits = ["_cpu"]
  tags     = ["${REGISTRY}/data:${VERSION}"]
}

target "sft" {
  inherits = ["_gpu"]
  tags     = ["${REGISTRY}/sft:${VERSION}"]
}

target "preference" {
  inherits = ["_gpu"]
  tags     = ["${REGISTRY}/preference:${VERSION}"]
}

target "dpo" {
  inherits = ["_gpu"]
  tags     = ["${REGISTRY}/dpo:${VERSION}"]
}

target "rlvr" {
  inherits = ["_gpu"]
  tags     = ["${REGISTRY}/rlvr:${VERSION}"]
}

target "eval" {
  inherits = ["_gpu"]
  tags     = ["${REGISTRY}/eval:${VERSION}"]
}

target "promote" {
  inherits = ["_cpu"]
  tags     = ["${REGISTRY}/promote:${VERSION}"]
}
