"""The backend's train and test steps for a `TwoStageTrainer`.

The steps read the model only through the trainer's public contract
(`compute_losses`, `stage_variables`, `update_metrics`, `check_batch`,
`tau`) and public Keras state (variables, optimizer, metrics). The
backend's module is imported on first use: each imports its framework
(`jax`, `tensorflow`), and the other may not be installed.
"""

import keras


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
    return _backend_module().state_attached(model, train_function_args)
