#!/usr/bin/env bash
# Every GPU path of the pipeline in one run, sized for about ten minutes on one H100: a scratch ~100M-parameter
# Llama through SFT (bf16, packing), preference sampling, DPO, GRPO, PPO, the adapter path (QLoRA SFT where the
# image has bitsandbytes, LoRA DPO and GRPO; about a minute) and eval, each asserted to have used CUDA, its peak
# CUDA memory recorded next to posttrain.plan's estimate for the same settings; the last line is one JSON object
# with SFT tokens/s, MFU and peak_vs_plan (scripts/gpu_smoke.py says how).
#
# The GPU machine has PyTorch and transformers but no network and no vLLM; the small wheels it lacks travel
# with the working tree in .whl/ (git-ignored), at the versions of the GPU lock.
#
#   scripts/gpu_smoke.sh fetch          # here, with PyPI: fill .whl/ (about 15 MB)
#   scripts/gpu_smoke.sh [OUT_DIR]      # there: install .whl/ into /tmp/site, run the smoke (default gpu-smoke/)
#   SMOKE_DRY_RUN=1 scripts/gpu_smoke.sh  # anywhere: the same wiring on the CPU at micro sizes (no figures)
set -euo pipefail
cd "$(dirname "$0")/.."

# What the stages import that the GPU machine's image lacks (torch, transformers, accelerate, numpy, pyarrow,
# fsspec, huggingface-hub, sympy, scipy, pyyaml ... are there).
CARRIED=(trl datasets dill multiprocess pydantic pydantic-core annotated-types typing-inspection math-verify
         latex2sympy2-extended antlr4-python3-runtime nltk datasketch langdetect
         peft)  # bitsandbytes (~60 MB) is not carried: QLoRA runs where the image has it, LoRA otherwise

if [[ "${1:-}" == "fetch" ]]; then
    rm -rf .whl && mkdir -p .whl
    for name in "${CARRIED[@]}"; do
        pin=$(grep -m1 -iE "^${name}==" images/gpu/requirements.lock | cut -d' ' -f1)
        [[ -n "$pin" ]] || { echo "gpu_smoke: $name is not in images/gpu/requirements.lock" >&2; exit 1; }
        if [[ "$name" == langdetect ]]; then  # an sdist only: build its pure-Python wheel here
            python3 -m pip wheel --quiet --no-deps --no-binary=:all: -w .whl "$pin"
        else
            python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
                --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
                -d .whl "$pin"
        fi
    done
    du -sh .whl
    exit 0
fi

if [[ "${SMOKE_DRY_RUN:-}" != 1 ]] && compgen -G ".whl/*.whl" > /dev/null; then  # cp312 wheels: the GPU machine
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
exec python3 scripts/gpu_smoke.py "${1:-gpu-smoke}"
