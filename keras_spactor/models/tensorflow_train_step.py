"""A `TwoStageTrainer`'s train and test steps on TensorFlow."""

import contextlib

import keras
import tensorflow as tf

from keras_spactor.models import stage_step_parts


def _gradients(model, hybrid, variables, x, y, sample_weight):
    with tf.GradientTape() as tape:
        loss, outputs = model.compute_losses(
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
    return grads, outputs


def train_step(model, data, mode):
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    model.check_batch(x, y)
    trainable = model.trainable_variables
    if mode == "mixed":
        # An execution that spans tau: decide per step, in the graph. Both
        # branches return gradients for every variable (zeros for the
        # stage-1-only ones in stage 2) and the same logs; the stage-1-only
        # weights are then put back, so in stage 2 they stay bit-identical.
        hybrid = model.optimizer.iterations < model.tau
        stage2 = set(stage_step_parts.stage_indices(model, False))
        stage1_only = [v for i, v in enumerate(trainable) if i not in stage2]
        before = [tf.identity(v.value) for v in stage1_only]

        def branch(stage_hybrid):
            def run():
                grads, outputs = _gradients(
                    model, stage_hybrid, trainable, x, y, sample_weight
                )
                logs = stage_step_parts.train_logs(model, outputs, stage_hybrid)
                return [tf.convert_to_tensor(g) for g in grads], logs

            return run

        grads, logs = tf.cond(hybrid, branch(True), branch(False))
        model.optimizer.apply(grads, trainable)
        for variable, old in zip(stage1_only, before):
            variable.assign(tf.where(hybrid, variable.value, old))
        return logs
    hybrid = mode == "hybrid"
    indices = stage_step_parts.stage_indices(model, hybrid)
    variables = [trainable[i] for i in indices]
    grads, outputs = _gradients(model, hybrid, variables, x, y, sample_weight)
    model.optimizer.apply(grads, variables)
    return stage_step_parts.train_logs(model, outputs, hybrid)


def test_step(model, data):
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    model.check_batch(x, y)
    _, outputs = model.compute_losses(
        x, y, sample_weight, hybrid=False, training=False
    )
    return model.update_metrics(outputs, training=False)


def read_iterations(model, args):
    return int(model.optimizer.iterations.numpy())


def state_attached(model, args):
    """A no-op: TensorFlow keeps the state on the variables."""
    return contextlib.nullcontext()


def _per_replica(loss):
    """Under a `tf.distribute` strategy gradients are summed over replicas,
    so each replica's loss is divided by their number (as Keras' own train
    step does)."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas > 1:
        loss = loss * tf.cast(1.0 / replicas, loss.dtype)
    return loss
