"""What a pre-training run says: its start-up line, and the one line of a
data error."""

import collections
import re
import sys

import keras


def describe_devices():
    """The accelerators the backend trains on, e.g. `"8 x TPU v5 lite"`."""
    if keras.backend.backend() == "jax":
        import jax

        kinds = [device.device_kind for device in jax.devices()]
    else:
        import tensorflow as tf

        kinds = [
            device.device_type
            for device in tf.config.list_logical_devices()
            if device.device_type != "CPU"
        ] or ["CPU"]
    counts = collections.Counter(kinds)
    return ", ".join(f"{n} x {kind}" for kind, n in counts.items())


def describe_tau(tau, steps):
    """What the resolved switch step means for a run of `steps` steps."""
    run = f"tau {tau} of {steps} step{'s' if steps != 1 else ''}"
    if tau == 0:
        return f"{run} (plain span corruption)"
    if tau is None or tau >= steps:
        return f"{run} (hybrid throughout)"
    return f"{run} (hybrid for steps 0-{tau - 1}, then span corruption)"


def startup_line(config, model, tau, done):
    """One line: backend, devices, preset, parameters, tau, data.

    Args:
        config: the run's `PretrainingConfig`.
        model: the `SpacTorT5` about to train.
        tau: int or `None`. The resolved switch step.
        done: int. The steps already trained (a resume).

    Returns:
        str.
    """

    def millions(n):
        return f"{n / 1e6:.1f}M"

    auxiliary = sum(layer.count_params() for layer in model.auxiliary_layers)
    line = (
        f"keras-spactor pretrain: backend {keras.backend.backend()} on "
        f"{describe_devices()}; preset {config.preset}, "
        f"{millions(model.count_params())} parameters (T5 "
        f"{millions(model.backbone.count_params())}, generator and heads "
        f"{millions(auxiliary)}); {describe_tau(tau, config.steps)}; data "
        f"{config.data}"
    )
    if done:
        line += f"; resuming at step {done}"
    return line


def is_data_read_error(error):
    """Whether `fit` failed reading its input: a file that vanished or
    turned unreadable surfaces as an `OSError` or, through tf.data, as a
    TensorFlow `OpError` of the input iterator's `IteratorGetNext` op."""
    if isinstance(error, OSError):
        return True
    # Not imported (a run on array batches without TensorFlow): no OpError.
    tf = sys.modules.get("tensorflow")
    return tf is not None and (
        isinstance(error, tf.errors.OpError) and "IteratorGetNext" in str(error)
    )


def data_error_text(error):
    """The line of a data error that names the cause (and the file)."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    line = next((x for x in lines if "Error" in x and "/" in x), lines[0])
    # TensorFlow prefixes the op's name in double braces, and an error
    # raised in a dataset function with where in the pipeline it was.
    line = re.sub(r"\{\{.*?\}\}\s*", "", line)
    line = re.sub(r"Error in user-defined .*?Iterator::\S*: ", "", line)
    return line.strip()[:300]
