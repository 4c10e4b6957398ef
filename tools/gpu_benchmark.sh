#!/usr/bin/env bash
# A prepared GPU run, T5-base shape, bf16, JAX, in stages that each fit a
# 10-minute command (`all` runs the three, longer than that):
#
#   profile: tools/profile_step.py times a bare bf16 matrix product (what
#     XLA reaches on this chip), keras-hub's T5Backbone forward + backward,
#     the SC loss and the hybrid loss, each alone, and traces two calls of
#     each (the busiest kernels of every device line, and the optimized
#     HLO to read their names against); then the backbone again with
#     cuBLAS for every matrix product and with CUDA graphs off, to tell an
#     XLA setting from the model's graph.
#   steps: tools/benchmark_step.py --against-hf: seconds per step and MFU
#     of SpacTorT5 at tau=0, in stage 1 and in stage 2, and of Hugging
#     Face's T5 under torch.compile on the same work.
#   losses: the SC and hybrid loss rows of `profile` alone, traced.
#
#   bash tools/gpu_benchmark.sh [profile|steps|losses|all|A,B] [peak_tflops]
#
# peak_tflops defaults to 989 (H100/H200, bf16, dense). Logs, traces and
# HLO go to $OUT, or runs/gpu. Needs a CUDA build of JAX
# (pip install "jax[cuda12]"), and torch with transformers for the Hugging
# Face row.
set -uo pipefail
cd "$(dirname "$0")/.."
stage="${1:-all}"
peak="${2:-989}"
out="${OUT:-runs/gpu}"
mkdir -p "${out}"
shape=(--config base --mixed-precision --batch-size 64 --inputs-length 512
    --targets-length 114)
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.9
# A second compile of the same program (the HLO of a traced row) is read
# from here instead of compiled again.
export JAX_COMPILATION_CACHE_DIR=/tmp/jax-compilation-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import jax, keras, keras_hub; print('jax', jax.__version__,
    'keras', keras.__version__, 'keras_hub', keras_hub.__version__,
    jax.devices())"

runs() { [[ ",${stage}," == *",$1,"* || "${stage}" == all ]]; }

if runs profile; then
    timeout 240 python3 tools/profile_step.py "${shape[@]}" \
        --matmul-size 8192 --steps 3 --rounds 2 --trace /tmp/trace \
        > "${out}/profile.log" 2>&1
    for row in backbone sc_loss hybrid_loss; do
        cp /tmp/trace/"${row}"/plugins/profile/*/perfetto_trace.json.gz \
            "${out}/trace_${row}.json.gz"
    done
    cp /tmp/trace/backbone.hlo.txt.gz /tmp/trace/sc_loss.hlo.txt.gz "${out}/"
    for flags in --xla_gpu_enable_triton_gemm=false \
        --xla_gpu_enable_command_buffer=; do
        echo "XLA_FLAGS=${flags}"
        XLA_FLAGS="${flags}" timeout 90 python3 tools/profile_step.py \
            "${shape[@]}" --rows backbone --steps 3 --rounds 2 2>&1 |
            grep '"row"'
    done > "${out}/profile_xla_flags.log" 2>&1
    grep -h '"row"\|^trace \|busy' "${out}/profile.log"
    cat "${out}/profile_xla_flags.log"
fi

if runs steps; then
    timeout 360 python3 tools/benchmark_step.py "${shape[@]}" \
        --peak-tflops "${peak}" --steps 5 --rounds 2 --against-hf \
        --variants b_tau0,c_stage1,d_stage2 > "${out}/steps.log" 2>&1
    grep -v Warning "${out}/steps.log" | tail -60
fi

if runs losses; then
    timeout 120 python3 tools/profile_step.py "${shape[@]}" \
        --rows sc_loss,hybrid_loss --steps 3 --rounds 2 --trace /tmp/trace \
        > "${out}/losses.log" 2>&1
    cp /tmp/trace/hybrid_loss/plugins/profile/*/perfetto_trace.json.gz \
        "${out}/trace_hybrid_loss.json.gz"
    grep -h '"row"\|^trace \|busy\| ms ' "${out}/losses.log" | head -40
fi
