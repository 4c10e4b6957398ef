"""SpacTorT5's stateless train and test steps for the JAX backend."""

import functools

import jax
import keras

from keras_spactor._keras_compat import jax_state_attached


def _values_after(scope, variables, old_values):
    values = []
    for variable, old in zip(variables, old_values):
        new = scope.get_current_value(variable)
        values.append(old if new is None else new)
    return values


def _update(model, hybrid, trainable, non_trainable, optimizer_values, data):
    """One optimizer step for a fixed (Python) stage."""
    x, y, sample_weight = data
    trainable_variables = model.trainable_variables
    non_trainable_variables = model.non_trainable_variables
    indices = model._trainable_indices(hybrid)

    def loss_fn(updated, trainable, non_trainable):
        values = list(trainable)
        for i, value in zip(indices, updated):
            values[i] = value
        mapping = list(zip(trainable_variables, values))
        mapping += list(zip(non_trainable_variables, non_trainable))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            loss, stats = model.compute_losses(
                x, y, sample_weight, hybrid=hybrid, training=True
            )
        non_trainable = _values_after(
            scope, non_trainable_variables, non_trainable
        )
        return loss, (stats, non_trainable)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, (stats, non_trainable)), grads = grad_fn(
        [trainable[i] for i in indices], trainable, non_trainable
    )
    optimizer_variables = model.optimizer.variables
    mapping = list(zip(trainable_variables, trainable))
    mapping += list(zip(optimizer_variables, optimizer_values))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        model.optimizer.apply(grads, [trainable_variables[i] for i in indices])
    trainable = _values_after(scope, trainable_variables, trainable)
    optimizer_values = _values_after(
        scope, optimizer_variables, optimizer_values
    )
    return trainable, non_trainable, optimizer_values, stats


def train_step(model, state, data, mode):
    trainable, non_trainable, optimizer_values, metrics_values = state
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    model.check_batch(x, y)
    data = (x, y, sample_weight)
    operands = (trainable, non_trainable, optimizer_values)
    if mode == "mixed":
        # An execution that spans tau: decide per step, on the device.
        hybrid = optimizer_values[_iterations_index(model)] < model.tau
        trainable, non_trainable, optimizer_values, stats = jax.lax.cond(
            hybrid,
            functools.partial(_update_operands, model, True, data),
            functools.partial(_update_operands, model, False, data),
            *operands,
        )
    else:
        hybrid = mode == "hybrid"
        trainable, non_trainable, optimizer_values, stats = _update(
            model, hybrid, *operands, data
        )
    metrics_variables = model.metrics_variables
    mapping = list(zip(metrics_variables, metrics_values))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        logs = model.update_train_metrics(stats, hybrid)
    metrics_values = _values_after(scope, metrics_variables, metrics_values)
    return logs, (trainable, non_trainable, optimizer_values, metrics_values)


def _update_operands(model, hybrid, data, trainable, non_trainable, opt):
    return _update(model, hybrid, trainable, non_trainable, opt, data)


def test_step(model, state, data):
    trainable, non_trainable, metrics_values = state
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    model.check_batch(x, y)
    mapping = list(zip(model.trainable_variables, trainable))
    mapping += list(zip(model.non_trainable_variables, non_trainable))
    mapping += list(zip(model.metrics_variables, metrics_values))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        _, stats = model.compute_losses(
            x, y, sample_weight, hybrid=False, training=False
        )
        logs = model.update_test_metrics(stats)
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
    stage variant builds mid-epoch (see `jax_state_attached`)."""
    groups = [
        model.trainable_variables,
        model.non_trainable_variables,
        model.optimizer.variables,
        model.metrics_variables,
    ]
    return jax_state_attached(groups, args[0] if args else ())
