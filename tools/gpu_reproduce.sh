#!/usr/bin/env bash
# SC vs SpacTor (and the random-init baseline) at T5 v1.1 small shape, bf16,
# on one GPU with JAX: pre-training, fine-tuning on SST-2 and TREC, one
# results.md / results.json table (`--setting h100_small` of
# tools/reproduce_paper.py, sized to about 9 minutes from the SC step time
# measured on an H200; the run stops at 9 minutes and reports the rows it
# finished).
#
#   bash tools/gpu_reproduce.sh [output_dir] [reproduce_paper.py flags]
#
# Needs a CUDA build of JAX (pip install "jax[cuda12]"), keras and keras-hub,
# and the corpora and downstream files that reproduce_paper.py reads. On a
# machine without TensorFlow, write the pre-training batches elsewhere first
# and pass them in:
#
#   python tools/reproduce_paper.py --setting h100_small \
#       --export-batches batches            # where TensorFlow is
#   bash tools/gpu_reproduce.sh runs/gpu_reproduce --batches batches \
#       --downstream <dir with sst2.*.tsv and trec.*.tsv>
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/gpu_reproduce}"
shift || true
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
export KERAS_BACKEND=jax
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.9
timeout 540 python3 tools/reproduce_paper.py --setting h100_small \
    --output-dir "${out}" "$@" || status=$?
# A run cut short still reports the rows it finished.
if [ "${status:-0}" -ne 0 ] && [ -f "${out}/rows.jsonl" ]; then
    python3 tools/reproduce_paper.py --setting h100_small \
        --output-dir "${out}" --report-only "$@" || true
fi
cat "${out}/results.md" 2>/dev/null || true
exit "${status:-0}"
