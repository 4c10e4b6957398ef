"""Where a train step's time goes, piece by piece (JAX or TensorFlow).

Each row is one compiled function (`jax.jit`, or `tf.function` with XLA as
Keras's TF `fit` compiles its step), timed alone on a synthetic batch (best
of `--rounds`, `--steps` calls each), beside its analytic FLOPs:

- `matmul`: one square matrix product in the compute dtype, what XLA
  reaches on this device (the ceiling every other row is read against);
- `backbone`: keras-hub's `T5Backbone`, forward + backward of a scalar of
  its decoder outputs (no LM head);
- `sc_loss`: `SpacTorT5.compute_losses(hybrid=False)` forward + backward
  (the backbone, the LM head over the vocabulary, the float32 loss);
- `hybrid_loss`: the same in stage 1 (mask, generator, sampling, RTD).

Differences between rows price the pieces: `sc_loss - backbone` is the LM
head and loss, `hybrid_loss - sc_loss` the generator's share; a full step
(`tools/benchmark_step.py`, b) minus `sc_loss` is the optimizer and the
`fit` loop.

    KERAS_BACKEND=jax python tools/profile_step.py --config tiny
    KERAS_BACKEND=tensorflow python tools/profile_step.py --config tiny
    KERAS_BACKEND=jax python tools/profile_step.py --config base \\
        --mixed-precision --batch-size 64 --inputs-length 512 \\
        --targets-length 114 --matmul-size 8192          # on a GPU
"""

import argparse
import collections
import glob
import gzip
import json
import os
import shutil
import sys
import time

import keras

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchmark_step import VOCABULARY  # noqa: E402
from benchmark_step import backbone  # noqa: E402
from benchmark_step import batch  # noqa: E402
from step_common import add_step_arguments  # noqa: E402

import keras_spactor  # noqa: E402
from keras_spactor.flops import train_step_flops  # noqa: E402

JAX = keras.backend.backend() == "jax"
if JAX:
    import jax
else:
    import tensorflow as tf


def wait_for(out):
    """Block until `out` is computed (JAX dispatches asynchronously)."""
    if JAX:
        jax.block_until_ready(out)
    else:
        # (Gradients of variables the scalar does not read are None.)
        [t for t in keras.tree.flatten(out) if t is not None][-1].numpy()


def timed(function, args, steps, rounds):
    """Best seconds per call of a compiled `function(*args)` (compiled
    first)."""
    wait_for(function(*args))
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            out = function(*args)
        wait_for(out)
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def kernel_table(trace_dir, top=12):
    """Per-device-line totals of a JAX profiler trace (the Perfetto JSON that
    `jax.profiler.trace(..., create_perfetto_trace=True)` writes): for each
    line of the accelerator (a CUDA stream, "XLA Ops", "XLA Modules"), its
    busy microseconds and its `top` events by total time. Where the device
    lines are busy far less than the wall time, the host is the bottleneck.
    """
    [path] = glob.glob(f"{trace_dir}/**/perfetto_trace.json.gz", recursive=True)
    with gzip.open(path) as f:
        events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    processes, threads = {}, {}
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "process_name":
            processes[e["pid"]] = e["args"]["name"]
        if e.get("ph") == "M" and e.get("name") == "thread_name":
            threads[(e["pid"], e["tid"])] = e["args"]["name"]
    spans = [e for e in events if e.get("ph") == "X"]
    wall = max(e["ts"] + e["dur"] for e in spans) - min(e["ts"] for e in spans)
    lines = collections.defaultdict(collections.Counter)
    counts = collections.defaultdict(collections.Counter)
    for e in spans:
        process = processes.get(e["pid"], "")
        if "/host:" in process or not process:
            continue
        line = f"{process} | {threads.get((e['pid'], e['tid']), e['tid'])}"
        lines[line][e["name"]] += e["dur"]
        counts[line][e["name"]] += 1
    table = {"wall_us": wall, "lines": {}}
    for line, totals in lines.items():
        table["lines"][line] = {
            "busy_us": sum(totals.values()),
            "events": sum(counts[line].values()),
            "top": [
                (name, round(us), counts[line][name])
                for name, us in totals.most_common(top)
            ],
        }
    return table


def print_kernel_table(name, table):
    print(f"trace {name}: wall {table['wall_us'] / 1e3:.1f} ms")
    for line, summary in table["lines"].items():
        print(
            f"  {line}: busy {summary['busy_us'] / 1e3:.1f} ms, "
            f"{summary['events']} events"
        )
        for event, us, count in summary["top"]:
            print(f"    {us / 1e3:9.2f} ms {count:6d}x  {event[:90]}")
    sys.stdout.flush()


def traced(name, function, args, trace_dir, calls=2):
    """Trace `calls` calls of a compiled JAX `function` into
    `trace_dir/name` and summarize its device lines; the optimized HLO goes
    beside it (`name.hlo.txt.gz`), to read fusion names against."""
    directory = os.path.join(trace_dir, name)
    shutil.rmtree(directory, ignore_errors=True)  # one trace per row
    with jax.profiler.trace(directory, create_perfetto_trace=True):
        for _ in range(calls):
            out = function(*args)
        wait_for(out)
    hlo = function.lower(*args).compile().as_text()
    with gzip.open(os.path.join(trace_dir, f"{name}.hlo.txt.gz"), "wt") as f:
        f.write(hlo)
    return kernel_table(directory)


def compiled(function):
    if JAX:
        return jax.jit(function)
    return tf.function(function, jit_compile=True)


def gradient_of(model, scalar_of):
    """A compiled function of the model's state that returns the gradients
    of `scalar_of()`, and the state to call it with."""
    trainable_variables = model.trainable_variables
    if not JAX:

        def gradients():
            with tf.GradientTape() as tape:
                value = scalar_of()
            return tape.gradient(value, trainable_variables)

        return compiled(gradients), ()
    non_trainable_variables = model.non_trainable_variables

    def loss(trainable, non_trainable):
        mapping = list(zip(trainable_variables, trainable))
        mapping += list(zip(non_trainable_variables, non_trainable))
        with keras.StatelessScope(state_mapping=mapping):
            return scalar_of()

    state = (
        [v.value for v in trainable_variables],
        [v.value for v in non_trainable_variables],
    )
    return jax.jit(jax.grad(loss)), state


def device_name():
    if JAX:
        return str(jax.devices()[0].device_kind)
    devices = tf.config.list_logical_devices()
    return ", ".join(sorted({d.device_type for d in devices}))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    add_step_arguments(parser, steps=5, rounds=3)
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument(
        "--rows",
        default="matmul,backbone,sc_loss,hybrid_loss",
        help="Which rows to time, comma-separated.",
    )
    parser.add_argument(
        "--trace",
        default=None,
        help="JAX: after timing, trace two calls of each row into this "
        "folder and print each device line's busiest kernels.",
    )
    args = parser.parse_args()
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    dtype = keras.mixed_precision.dtype_policy().compute_dtype
    x, y = batch(args.batch_size, args.inputs_length, args.targets_length)
    keras.utils.set_random_seed(0)
    model = keras_spactor.SpacTorT5(
        backbone(args.config), vocabulary_size=VOCABULARY, tau=None
    )
    model.compute_losses(x, y, hybrid=True, training=True)  # builds all
    shape = (args.batch_size, args.inputs_length, args.targets_length)
    flops = {
        "sc_loss": train_step_flops(model, *shape, hybrid=False),
        "hybrid_loss": train_step_flops(model, *shape, hybrid=True),
    }

    def decoder_scalar():
        outputs = model.backbone(x, training=True)
        return keras.ops.mean(
            keras.ops.cast(outputs["decoder_sequence_output"], "float32")
        )

    def losses(hybrid):
        def scalar():
            loss, _ = model.compute_losses(x, y, hybrid=hybrid, training=True)
            return loss

        return scalar

    n = args.matmul_size
    # Random, not constant, operands: some devices multiply zeros faster.
    a = keras.random.normal((n, n), dtype=dtype, seed=0)
    rows = {
        "matmul": (compiled(lambda a: keras.ops.matmul(a, a)), (a,), 2 * n**3),
        "backbone": (*gradient_of(model, decoder_scalar), None),
        "sc_loss": (*gradient_of(model, losses(False)), None),
        "hybrid_loss": (*gradient_of(model, losses(True)), None),
    }
    rows = {k: v for k, v in rows.items() if k in args.rows.split(",")}
    seconds = {}
    for name, (function, inputs, row_flops) in rows.items():
        seconds[name] = timed(function, inputs, args.steps, args.rounds)
        row_flops = row_flops or flops.get(name)
        line = {"row": name, "seconds": seconds[name]}
        if row_flops:
            line["tflops_per_s"] = row_flops / seconds[name] / 1e12
        print(json.dumps(line), flush=True)
        if args.trace and JAX:
            table = traced(name, function, inputs, args.trace)
            print_kernel_table(name, table)
    if set(rows) != {"matmul", "backbone", "sc_loss", "hybrid_loss"}:
        return
    print(
        json.dumps(
            {
                "backend": keras.backend.backend(),
                "device": device_name(),
                "config": args.config,
                "batch": shape,
                "compute_dtype": dtype,
                "seconds": seconds,
                "lm_head_and_loss": seconds["sc_loss"] - seconds["backbone"],
                "generator_share": seconds["hybrid_loss"] - seconds["sc_loss"],
                "flops_ratio_hybrid/sc": flops["hybrid_loss"]
                / flops["sc_loss"],
                "seconds_ratio_hybrid/sc": seconds["hybrid_loss"]
                / seconds["sc_loss"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
