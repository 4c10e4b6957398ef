#!/usr/bin/env bash
# SC vs SpacTor (and the random-init baseline) at T5 v1.1 small shape, bf16,
# on one GPU with JAX: pre-training, fine-tuning on SST-2 and TREC, one
# results.md / results.json table (`--setting h100_small` of
# tools/reproduce_paper.py, sized to about 9 minutes from the SC step time
# measured on an H200; the run stops at 9 minutes (TIMEOUT, 540 s) and
# reports the rows it finished).
#
#   bash tools/gpu_reproduce.sh prepare --downstream DIR   # here, once
#   bash tools/gpu_reproduce.sh [output_dir] [reproduce_paper.py flags]
#   TOY=1 bash tools/gpu_reproduce.sh prepare      # on a CPU, the `quick`
#   TOY=1 bash tools/gpu_reproduce.sh              #   setting, end to end
#
# The device machines have a CUDA build of JAX but no TensorFlow, no Keras
# and no network. `prepare` (where TensorFlow is; DIR holds SST-2's and
# TREC's TSVs, see reproduce_paper.py --help) writes every pre-training and
# validation batch the run reads, its vocabulary and the downstream task
# files into build/device_data; with it and build/device_wheels
# (`bash tools/gpu_benchmark.sh wheels`) carried to the machine, the run
# installs Keras and keras-hub offline, and each arm's PretrainingRun reads
# its seed's batches from build/device_data instead of the text (the same
# batches; without TensorFlow the runs write no TensorBoard logs).
set -euo pipefail
cd "$(dirname "$0")/.."
setting=h100_small
limit="${TIMEOUT:-540}"
data=build/device_data
wheels=build/device_wheels
if [ -n "${TOY:-}" ]; then
    setting=quick
    limit="${TIMEOUT:-1800}"
    data=build/device_data_toy
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
export PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}"

if [ "${1:-}" = prepare ]; then
    rm -rf "${data}"
    # Writes ${data}/batches/downstream/ too: the task files it read.
    python3 tools/reproduce_paper.py --setting "${setting}" \
        --export-batches "${data}/batches" \
        --output-dir "${data}/prepare" "${@:2}"
    rm -rf "${data}/prepare"
    du -sh "${data}"
    exit
fi

out="${1:-runs/gpu_reproduce}"
shift || true
[ -n "${TOY:-}" ] || nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if ! python3 -c "import keras_hub" 2>/dev/null && [ -d "${wheels}" ]; then
    python3 -m pip install -q --no-index --no-deps "${wheels}"/*.whl
fi
flags=()
if [ -d "${data}" ]; then
    flags=(--batches "${data}/batches" \
        --downstream "${data}/batches/downstream")
fi
[ -z "${TOY:-}" ] && export XLA_PYTHON_CLIENT_MEM_FRACTION=0.9
timeout "${limit}" python3 tools/reproduce_paper.py --setting "${setting}" \
    --output-dir "${out}" "${flags[@]}" "$@" || status=$?
# A run cut short still reports the rows it finished.
if [ "${status:-0}" -ne 0 ] && [ -f "${out}/rows.jsonl" ]; then
    python3 tools/reproduce_paper.py --setting "${setting}" \
        --output-dir "${out}" "${flags[@]}" --report-only "$@" \
        > /dev/null || true
fi
cat "${out}/results.md" 2>/dev/null || true
exit "${status:-0}"
