"""Backend dispatch for `SpacTorT5.train_step` / `test_step`."""

import contextlib

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
    """One train step; `mode` is "hybrid", "sc" or "mixed" (decide per step
    on the device from the optimizer's step count and `model.tau`)."""
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


def trainable_indices(model, hybrid):
    """Indices into `model.trainable_variables` that a step updates.

    Stage 1 updates everything; stage 2 only the T5 backbone, so the
    generator and heads leave the optimizer's update entirely.
    """
    variables = model.trainable_variables
    if hybrid:
        return list(range(len(variables)))
    backbone_ids = {id(v) for v in model.backbone.trainable_variables}
    return [i for i, v in enumerate(variables) if id(v) in backbone_ids]
