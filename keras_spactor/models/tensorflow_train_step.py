"""SpacTorT5's train and test steps for the TensorFlow backend."""

import keras
import tensorflow as tf


def _gradients(model, hybrid, variables, x, y, sample_weight):
    with tf.GradientTape() as tape:
        loss, stats = model.compute_losses(
            x, y, sample_weight, hybrid=hybrid, training=True
        )
        loss = _per_replica(loss)
    grads = tape.gradient(loss, variables)
    # Stage 2 does not reach the generator: zeros (TF's own ZERO option
    # trips over Keras variables' string dtypes).
    grads = [
        tf.zeros_like(v.value) if g is None else g
        for g, v in zip(grads, variables)
    ]
    return grads, stats


def train_step(model, data, mode):
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    model.check_batch(x, y)
    trainable = model.trainable_variables
    if mode == "mixed":
        # An execution that spans tau: decide per step, in the graph. Both
        # branches return gradients for every variable (zeros for the
        # generator and heads in stage 2); their weights are then put back,
        # so in stage 2 they stay bit-identical.
        hybrid = model.optimizer.iterations < model.tau
        backbone = set(model._trainable_indices(False))
        auxiliary = [v for i, v in enumerate(trainable) if i not in backbone]
        before = [tf.identity(v.value) for v in auxiliary]

        def branch(stage_hybrid):
            def run():
                grads, stats = _gradients(
                    model, stage_hybrid, trainable, x, y, sample_weight
                )
                return [tf.convert_to_tensor(g) for g in grads], stats

            return run

        grads, stats = tf.cond(hybrid, branch(True), branch(False))
        model.optimizer.apply(grads, trainable)
        for variable, old in zip(auxiliary, before):
            variable.assign(tf.where(hybrid, variable.value, old))
    else:
        hybrid = mode == "hybrid"
        indices = model._trainable_indices(hybrid)
        variables = [trainable[i] for i in indices]
        grads, stats = _gradients(model, hybrid, variables, x, y, sample_weight)
        model.optimizer.apply(grads, variables)
    return model.update_train_metrics(stats, hybrid)


def test_step(model, data):
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    model.check_batch(x, y)
    _, stats = model.compute_losses(
        x, y, sample_weight, hybrid=False, training=False
    )
    return model.update_test_metrics(stats)


def read_iterations(model, args):
    return int(model.optimizer.iterations.numpy())


def _per_replica(loss):
    """Under a `tf.distribute` strategy gradients are summed over replicas,
    so each replica's loss is divided by their number (as Keras' own train
    step does)."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas > 1:
        loss = loss * tf.cast(1.0 / replicas, loss.dtype)
    return loss
