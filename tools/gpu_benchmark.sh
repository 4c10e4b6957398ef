#!/usr/bin/env bash
# A prepared GPU run, T5-base shape, bf16, JAX. The default stage, `fused`,
# is one device call of at most 8 minutes on a fresh H100/H200:
#
#   fused: a bare bf16 8192^3 matrix product (tools/profile_step.py
#     --rows matmul: what XLA reaches on this chip); then
#     tools/benchmark_step.py --against-hf --fused-attention both: seconds
#     per step and MFU of Hugging Face's T5 under torch.compile and of
#     SpacTorT5 (b) tau=0, (c) stage 1, (d) stage 2, each without and with
#     keras_spactor.layers.use_fused_attention, and c/b; one table
#     (tools/gpu_benchmark_table.py) on stdout, $OUT/gpu_benchmark.json
#     and the logs under $OUT.
#
# Older stages, each within a 10-minute command (`all` runs the three):
#
#   profile: tools/profile_step.py times a bare bf16 matrix product,
#     keras-hub's T5Backbone forward + backward, the SC loss and the hybrid
#     loss, each alone, and traces two calls of each (the busiest kernels
#     of every device line, and the optimized HLO to read their names
#     against); then the backbone again with cuBLAS for every matrix
#     product and with CUDA graphs off, to tell an XLA setting from the
#     model's graph.
#   steps: tools/benchmark_step.py --against-hf, without the fused path.
#   losses: the SC and hybrid loss rows of `profile` alone, traced.
#
#   bash tools/gpu_benchmark.sh wheels       # here, with PyPI: see below
#   bash tools/gpu_benchmark.sh [fused|profile|steps|losses|all|A,B] [peak]
#   TOY=1 bash tools/gpu_benchmark.sh        # on a CPU, tiny: end to end
#
# The `fused` stage's 6 SpacTorT5 variants compile in its first round;
# if the step timings are cut short (STEPS_TIMEOUT, 380 s), the table
# reports the rounds that finished; VARIANTS=b_tau0,c_stage1 times fewer.
#
# peak (TFLOP/s) defaults to 989 (H100/H200, bf16, dense). Output goes to
# $OUT, or runs/gpu. The device machines have a CUDA build of JAX, torch
# and transformers, no network and no Keras: `wheels` downloads Keras and
# keras-hub (the versions of constraints/py3.13.txt) with the two
# dependencies the machine lacks, for its Python 3.12, into
# build/device_wheels; carry that folder to the machine, and this script
# installs them from it offline (pip --no-index) when Keras is missing.
# The package itself is read from this checkout (PYTHONPATH).
set -uo pipefail
cd "$(dirname "$0")/.."
stage="${1:-fused}"
peak="${2:-989}"
out="${OUT:-runs/gpu}"
wheels=build/device_wheels
mkdir -p "${out}"

if [ "${stage}" = wheels ]; then
    constraint() { grep -i "^$1==" constraints/py3.13.txt | cut -d= -f3; }
    python3 -m pip download --no-deps --only-binary=:all: \
        --python-version 3.12 --platform manylinux2014_x86_64 \
        --platform manylinux_2_28_x86_64 -d "${wheels}" \
        "keras==$(constraint keras)" "keras-hub==$(constraint keras-hub)" \
        "optree==$(constraint optree)" "namex==$(constraint namex)"
    exit
fi

shape=(--config base --mixed-precision --batch-size 64 --inputs-length 512
    --targets-length 114)
matmul=8192
matmul_dtype=bfloat16
steps=(--steps 5 --rounds 2)
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
export PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}"
if [ -n "${TOY:-}" ]; then
    # The whole run at a toy size on the CPU: float32, a tiny model.
    shape=(--config tiny --batch-size 4 --inputs-length 64
        --targets-length 16)
    matmul=256
    matmul_dtype=float32
    steps=(--steps 2 --rounds 1)
    peak=""
    : "${STEPS_TIMEOUT:=1800}"  # torch.compile alone takes minutes here
else
    : "${STEPS_TIMEOUT:=380}"  # with the rest, within an 8-minute call
    export XLA_PYTHON_CLIENT_MEM_FRACTION=0.9
    nvidia-smi --query-gpu=name,memory.total,driver_version \
        --format=csv,noheader
fi
if ! python3 -c "import keras_hub" 2>/dev/null && [ -d "${wheels}" ]; then
    python3 -m pip install -q --no-index --no-deps "${wheels}"/*.whl
fi
# A second compile of the same program (the HLO of a traced row) is read
# from here instead of compiled again.
export JAX_COMPILATION_CACHE_DIR=/tmp/jax-compilation-cache
python3 -c "import jax, keras, keras_hub; print('jax', jax.__version__,
    'keras', keras.__version__, 'keras_hub', keras_hub.__version__,
    jax.devices())"
python3 -c "import torch, transformers; print('torch', torch.__version__,
    'transformers', transformers.__version__)" 2>/dev/null ||
    echo "no torch/transformers here (HF_PYTHON names another python)"

runs() {
    [[ ",${stage}," == *",$1,"* || ("${stage}" == all && "$1" != fused) ]]
}

if runs fused; then
    timeout 60 python3 - "${matmul}" "${matmul_dtype}" \
        > "${out}/matmul.log" 2>&1 <<'PYTHON'
import json, sys, time
import jax
n, dtype = int(sys.argv[1]), sys.argv[2]
a = jax.random.normal(jax.random.key(0), (n, n), dtype)
product = jax.jit(lambda a: a @ a)
product(a).block_until_ready()
best = float("inf")
for _ in range(3):
    start = time.perf_counter()
    for _ in range(10):
        b = product(a)
    b.block_until_ready()
    best = min(best, (time.perf_counter() - start) / 10)
line = {"row": "matmul", "n": n, "dtype": dtype, "seconds": best}
print(json.dumps(dict(line, tflops_per_s=2 * n**3 / best / 1e12)))
PYTHON
    # Per-round lines reach the log as they are measured: a run stopped by
    # the timeout still gives the rounds it finished.
    timeout "${STEPS_TIMEOUT}" python3 tools/benchmark_step.py \
        "${shape[@]}" ${peak:+--peak-tflops "${peak}"} "${steps[@]}" \
        --against-hf --fused-attention both \
        --variants "${VARIANTS:-b_tau0,c_stage1,d_stage2}" \
        > "${out}/steps.log" 2>&1
    python3 tools/gpu_benchmark_table.py "${out}"
fi

if runs profile; then
    timeout 240 python3 tools/profile_step.py "${shape[@]}" \
        --matmul-size "${matmul}" --steps 3 --rounds 2 --trace /tmp/trace \
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
        --peak-tflops "${peak}" "${steps[@]}" --against-hf \
        --variants "${VARIANTS:-b_tau0,c_stage1,d_stage2}" \
        > "${out}/steps.log" 2>&1
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
