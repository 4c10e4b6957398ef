#!/usr/bin/env bash
# SC vs SpacTor (and the random-init baseline) at T5 v1.1 small shape, bf16,
# on one GPU with JAX: pre-training, fine-tuning on SST-2 and TREC, one
# results.md / results.json table. Sized to finish in under 9 minutes on one
# H100 (`--setting h100_small` of tools/reproduce_paper.py).
#
#   bash tools/gpu_reproduce.sh [output_dir]   # default runs/gpu_reproduce
#
# Needs a CUDA build of JAX on the machine (pip install "jax[cuda12]") and
# the corpora and downstream files that reproduce_paper.py reads.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/gpu_reproduce}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
export KERAS_BACKEND=jax
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.9
timeout 540 python tools/reproduce_paper.py --setting h100_small \
    --output-dir "${out}"
cat "${out}/results.md"
