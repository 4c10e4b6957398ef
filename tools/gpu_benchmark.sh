#!/usr/bin/env bash
# One short, prepared GPU run (< 8 minutes): seconds per step and MFU of
# T5-base-size span-corruption (tau=0), SpacTor stage-1 and stage-2 steps,
# and keras-hub's T5 with plain fit, in bf16 on one GPU with JAX.
#
#   bash tools/gpu_benchmark.sh [peak_tflops]   # default 989 (H100/H200 bf16)
#
# Needs a CUDA build of JAX on the machine (pip install "jax[cuda12]").
set -euo pipefail
cd "$(dirname "$0")/.."
peak="${1:-989}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
export KERAS_BACKEND=jax
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.9
timeout 450 python3 tools/benchmark_step.py \
    --config base --mixed-precision --peak-tflops "${peak}" \
    --batch-size 64 --inputs-length 512 --targets-length 114 \
    --steps 10 --rounds 3
