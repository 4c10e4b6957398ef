"""What the JAX and TensorFlow train steps share.

Its own module so that the backend step modules import it, not
`train_steps`, which picks them: no import cycle.
"""

from keras import ops


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
