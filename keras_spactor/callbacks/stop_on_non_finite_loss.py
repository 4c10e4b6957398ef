import math

import keras


def loss_is_finite(logs):
    """Whether `logs` hold no loss, or a finite one."""
    loss = (logs or {}).get("loss")
    return loss is None or math.isfinite(float(loss))


# Not Keras's `TerminateOnNaN`: that one stops too, but records no step,
# and the epoch still ends, so a checkpoint callback would save the broken
# state; this one keeps `bad_step` for the caller to refuse to save.
class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops `fit` at the first step whose loss is NaN or infinite.

    The step is kept as `bad_step` (`None` while every loss is finite), so
    that the caller can refuse to save the state it left.

    Example:
    ```python
    guard = StopOnNonFiniteLoss()
    model.fit(dataset, epochs=2, steps_per_epoch=10, callbacks=[guard])
    if guard.bad_step is not None:
        raise RuntimeError(f"non-finite loss at step {guard.bad_step}")
    ```
    """

    def __init__(self):
        super().__init__()
        self.bad_step = None

    def on_train_batch_end(self, batch, logs=None):
        if self.bad_step is None and not loss_is_finite(logs):
            iterations = self.model.optimizer.iterations
            self.bad_step = int(keras.ops.convert_to_numpy(iterations))
            self.model.stop_training = True
