import keras

from keras_spactor._keras_compat import callback_model
from keras_spactor.models.term_metrics import HYBRID_ONLY_METRICS


def stage_logs(logs, epoch_start, tau):
    """`logs` without the stage-1 metrics if the epoch ran no stage-1 step.

    Args:
        logs: dict. An epoch's (or a batch's) logs.
        epoch_start: int. The optimizer step the epoch started at.
        tau: int or None. The model's switch step.

    Returns:
        `logs` itself, or a copy without `HYBRID_ONLY_METRICS` when the
        epoch started at or after `tau` (those metrics then count no step
        and read zero).

    Example:
    ```python
    stage_logs({"loss": 1.0, "mlm_loss": 0.0}, epoch_start=4, tau=4)
    # {"loss": 1.0}
    ```
    """
    if logs is None or tau is None or epoch_start < tau:
        return logs
    return {k: v for k, v in logs.items() if k not in HYBRID_ONLY_METRICS}


class StageProgbarLogger(keras.callbacks.ProgbarLogger):
    """Keras's progress bar, without stage-1 metrics where none ran.

    From step `tau` on, the generator and RTD head are dropped and
    `mlm_loss`, `generator_accuracy`, `rtd_loss` and `rtd_accuracy` count
    no more steps: an epoch that starts in stage 2 would show them as
    zeros, as if the generator had collapsed. This bar leaves them out of
    such epochs; an epoch that ran stage-1 steps shows their mean over
    those steps. The logs themselves are not changed: TensorBoard keeps
    every metric. Passed to `fit` in `callbacks`, it replaces Keras's own
    bar (`fit`'s `verbose` still applies).

    Example:
    ```python
    model.fit(dataset, epochs=4, steps_per_epoch=50, verbose=2,
              callbacks=[TauScheduler("50%"), StageProgbarLogger()])
    ```
    """

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        iterations = self.model.optimizer.iterations
        self._epoch_start = int(keras.ops.convert_to_numpy(iterations))
        self._next_epoch_start = self._epoch_start

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self._next_epoch_start
        super().on_epoch_begin(epoch, logs)

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, self._shown(logs))

    def on_epoch_end(self, epoch, logs=None):
        # `seen` is the number of steps this epoch ran.
        self._next_epoch_start = self._epoch_start + self.seen
        super().on_epoch_end(epoch, self._shown(logs))

    def _shown(self, logs):
        # `_model`: no sync on JAX, `tau` is plain Python state.
        return stage_logs(logs, self._epoch_start, callback_model(self).tau)
