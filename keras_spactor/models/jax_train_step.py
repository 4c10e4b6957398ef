"""A `TwoStageTrainer`'s stateless train and test steps on JAX."""

import functools

import jax
import keras

from keras_spactor._keras_compat import jax_state_attached
from keras_spactor.models import stage_step_parts


def _values_after(scope, variables, old_values):
    values = []
    for variable, old in zip(variables, old_values):
        new = scope.get_current_value(variable)
        values.append(old if new is None else new)
    return values


def _step(model, hybrid, data, trainable, non_trainable, optimizer, metrics):
    """One optimizer step and its metrics, for a fixed (Python) stage."""
    x, y, sample_weight = data
    trainable_variables = model.trainable_variables
    non_trainable_variables = model.non_trainable_variables
    indices = stage_step_parts.stage_indices(model, hybrid)

    def loss_fn(updated, trainable, non_trainable):
        values = list(trainable)
        for i, value in zip(indices, updated):
            values[i] = value
        mapping = list(zip(trainable_variables, values))
        mapping += list(zip(non_trainable_variables, non_trainable))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            loss, outputs = model.compute_losses(
                x, y, sample_weight, hybrid=hybrid, training=True
            )
        non_trainable = _values_after(
            scope, non_trainable_variables, non_trainable
        )
        return loss, (outputs, non_trainable)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, (outputs, non_trainable)), grads = grad_fn(
        [trainable[i] for i in indices], trainable, non_trainable
    )
    optimizer_variables = model.optimizer.variables
    mapping = list(zip(trainable_variables, trainable))
    mapping += list(zip(optimizer_variables, optimizer))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        model.optimizer.apply(grads, [trainable_variables[i] for i in indices])
    trainable = _values_after(scope, trainable_variables, trainable)
    optimizer = _values_after(scope, optimizer_variables, optimizer)

    metrics_variables = model.metrics_variables
    mapping = list(zip(metrics_variables, metrics))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        logs = stage_step_parts.train_logs(model, outputs, hybrid)
    metrics = _values_after(scope, metrics_variables, metrics)
    return logs, (trainable, non_trainable, optimizer, metrics)


def train_step(model, state, data, mode):
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    model.check_batch(x, y)
    data = (x, y, sample_weight)
    if mode == "mixed":
        # An execution that spans tau: decide per step, on the device. Both
        # branches return the same logs and state structure.
        optimizer_values = state[2]
        hybrid = optimizer_values[_iterations_index(model)] < model.tau
        return jax.lax.cond(
            hybrid,
            functools.partial(_step, model, True, data),
            functools.partial(_step, model, False, data),
            *state,
        )
    return _step(model, mode == "hybrid", data, *state)


def test_step(model, state, data):
    trainable, non_trainable, metrics_values = state
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    model.check_batch(x, y)
    mapping = list(zip(model.trainable_variables, trainable))
    mapping += list(zip(model.non_trainable_variables, non_trainable))
    mapping += list(zip(model.metrics_variables, metrics_values))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        _, outputs = model.compute_losses(
            x, y, sample_weight, hybrid=False, training=False
        )
        logs = model.update_metrics(outputs, training=False)
    non_trainable = _values_after(
        scope, model.non_trainable_variables, non_trainable
    )
    metrics_values = _values_after(
        scope, model.metrics_variables, metrics_values
    )
    return logs, (trainable, non_trainable, metrics_values)


def _iterations_index(model):
    iterations = model.optimizer.iterations
    for i, variable in enumerate(model.optimizer.variables):
        if variable is iterations:
            return i
    raise ValueError("The optimizer's `iterations` is not among its variables.")


def read_iterations(model, args):
    state = args[0]
    return int(state[2][_iterations_index(model)])


def state_attached(model, args):
    """Puts the train state back on the model's purged variables while a
    stage function builds mid-epoch (see `jax_state_attached`)."""
    groups = [
        model.trainable_variables,
        model.non_trainable_variables,
        model.optimizer.variables,
        model.metrics_variables,
    ]
    return jax_state_attached(groups, args[0] if args else ())
