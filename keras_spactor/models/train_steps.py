"""The backend's train and test steps for a `TwoStageTrainer`.

The steps read the model only through the trainer's public contract
(`compute_losses`, `stage_variables`, `update_metrics`, `check_batch`,
`tau`) and public Keras state (variables, optimizer, metrics).
"""

import contextlib

import keras
from keras import ops


def _backend_module():
    backend = keras.backend.backend()
    if backend == "jax":
        from keras_spactor.models import jax_train_step

        return jax_train_step
    if backend == "tensorflow":
        from keras_spactor.models import tensorflow_train_step

        return tensorflow_train_step
    raise NotImplementedError(
        f"SpacTorT5 trains on the JAX and TensorFlow backends; the "
        f"'{backend}' backend is not supported. Set KERAS_BACKEND=jax or "
        "KERAS_BACKEND=tensorflow."
    )


def train_step(model, *args, mode):
    """One train step; `mode` is "hybrid" (stage 1), "sc" (stage 2) or
    "mixed" (decide per step on the device from the optimizer's step count
    and `model.tau`)."""
    return _backend_module().train_step(model, *args, mode=mode)


def test_step(model, *args):
    return _backend_module().test_step(model, *args)


def read_iterations(model, train_function_args):
    """The optimizer's step count, read on the host (one device sync)."""
    return _backend_module().read_iterations(model, train_function_args)


def state_attached(model, train_function_args):
    """Context in which a train function may be built mid-epoch (JAX puts
    the purged variable values back; a no-op elsewhere)."""
    if keras.backend.backend() == "jax":
        from keras_spactor.models import jax_train_step

        return jax_train_step.state_attached(model, train_function_args)
    return contextlib.nullcontext()


def stage_indices(model, hybrid):
    """Indices into `model.trainable_variables` of
    `model.stage_variables(hybrid)`, in the model's order."""
    wanted = {id(v) for v in model.stage_variables(hybrid)}
    return [
        i for i, v in enumerate(model.trainable_variables) if id(v) in wanted
    ]


def train_logs(model, outputs, hybrid):
    """The metrics' logs of a train step, plus its `stage` (1 or 2)."""
    logs = model.update_metrics(outputs, training=True)
    logs["stage"] = ops.convert_to_tensor(1.0 if hybrid else 2.0, "float32")
    return logs
