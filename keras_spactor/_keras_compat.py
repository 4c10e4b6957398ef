"""The only place that reaches into Keras' private state.

Everything else in the package uses public Keras APIs. What is here has no
public equivalent in Keras 3.15; each function says what it reads and why,
so a Keras upgrade that moves it breaks one small file, and a test fails.
"""

import contextlib

import keras


def learning_rate_schedule(optimizer):
    """The optimizer's schedule object, or `None` for a constant rate.

    `optimizer.learning_rate` evaluates the schedule at the optimizer's own
    step, which during a JAX `fit` lives in the train state, not on the
    model: reading it every step would sync the device. Keeping the
    schedule and evaluating it at a host-side step count avoids that; Keras
    keeps it only as `optimizer._learning_rate`.
    """
    rate = optimizer._learning_rate
    return rate if callable(rate) else None


def callback_model(callback):
    """The model a callback is set on, as it is.

    `Callback.model` on JAX first copies the train state from the device
    onto the model's variables (`jax_state_sync`); a callback that reads
    only Python attributes every step (`tau`, `steps_per_execution`) need
    not sync. Keras keeps the model unsynced only as `callback._model`.
    """
    return callback._model


def distribution_layout_map(distribution):
    """A `keras.distribution.ModelParallel`'s `LayoutMap` (kept only as
    `_layout_map`), to check it against the model before training."""
    return distribution._layout_map


@contextlib.contextmanager
def jax_state_attached(variable_groups, state):
    """Puts the train state back on purged variables while a step builds.

    During a JAX epoch Keras keeps the state only in the train function's
    arguments and sets the variables' values to `None`; under a
    `keras.distribution`, building a train function reads every variable's
    sharding, so a variant built mid-epoch (the stage switch) needs them.
    They are purged again afterwards: the state buffers get donated. Keras
    has no public way to set a variable's value to `None` or back without
    copying, so this writes `variable._value`.

    Args:
        variable_groups: lists of variables (trainable, non-trainable,
            optimizer, metrics), in the order of the train state.
        state: the train state, one list of values per group.
    """
    attached = []
    for variables, values in zip(variable_groups, state):
        for variable, value in zip(variables, values):
            if variable._value is None:
                variable._value = value
                attached.append(variable)
    try:
        yield
    finally:
        for variable in attached:
            variable._value = None


class FirstReplicaSymbolicBuild:
    """A `keras.Model` mixin: build from the first replica's batch.

    TensorFlow backend under a `tf.distribute` strategy only. Before the
    first step Keras reduces the first distributed batch with MEAN to learn
    its shapes, which fails on bool padding masks (AddN has no bool
    kernel); the first replica's values have the same (per-replica)
    shapes. Keras offers no public hook for this: the override is of
    `Model._maybe_symbolic_build`, and `_distribute_strategy` is the
    strategy Keras captured at compile (`None` without one, unlike the
    public `distribute_strategy`).
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = getattr(self, "_distribute_strategy", None)
        if iterator is not None and strategy is not None:
            for _, _, it in iterator:
                data_batch = keras.tree.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0],
                    next(it),
                )
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator, data_batch)


def all_sublayers(layer):
    """`layer` and every layer inside it, however deep (Keras 3 has no
    public walk below a functional model's `layers`; this is
    `Layer._flatten_layers`)."""
    return list(layer._flatten_layers(include_self=True, recursive=True))
