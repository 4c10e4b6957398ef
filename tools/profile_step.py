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
import json
import os
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
    a = keras.ops.ones((n, n), dtype)
    rows = {
        "matmul": (compiled(lambda a: keras.ops.matmul(a, a)), (a,), 2 * n**3),
        "backbone": (*gradient_of(model, decoder_scalar), None),
        "sc_loss": (*gradient_of(model, losses(False)), None),
        "hybrid_loss": (*gradient_of(model, losses(True)), None),
    }
    seconds = {}
    for name, (function, inputs, row_flops) in rows.items():
        seconds[name] = timed(function, inputs, args.steps, args.rounds)
        row_flops = row_flops or flops.get(name)
        line = {"row": name, "seconds": seconds[name]}
        if row_flops:
            line["tflops_per_s"] = row_flops / seconds[name] / 1e12
        print(json.dumps(line), flush=True)
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
