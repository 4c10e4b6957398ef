#!/usr/bin/env bash
# One short, prepared GPU run (< 10 minutes), T5-base shape, bf16, JAX:
# 1. tools/profile_step.py: a bare bf16 matrix product (what XLA reaches on
#    this chip), keras-hub's T5Backbone forward + backward, the SC loss and
#    the hybrid loss, each timed alone (where a step's time goes);
# 2. tools/benchmark_step.py --against-hf: seconds per step and MFU of
#    keras-hub's T5 with plain fit, SpacTorT5 at tau=0, in stage 1 and in
#    stage 2, and Hugging Face's T5 under torch.compile on the same work.
#
#   bash tools/gpu_benchmark.sh [peak_tflops]   # default 989 (H100/H200 bf16)
#
# Needs a CUDA build of JAX (pip install "jax[cuda12]"), and torch with
# transformers for the Hugging Face row.
set -euo pipefail
cd "$(dirname "$0")/.."
peak="${1:-989}"
shape=(--batch-size 64 --inputs-length 512 --targets-length 114)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
export KERAS_BACKEND=jax
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.9
timeout 150 python3 tools/profile_step.py --config base --mixed-precision \
    "${shape[@]}" --matmul-size 8192 || true
timeout 400 python3 tools/benchmark_step.py \
    --config base --mixed-precision --peak-tflops "${peak}" "${shape[@]}" \
    --steps 5 --rounds 2 --against-hf
