import time

import keras

from keras_spactor._keras_compat import callback_model
from keras_spactor._keras_compat import learning_rate_schedule
from keras_spactor.flops import flops_of_first_steps
from keras_spactor.flops import train_step_flops


def _now():
    return time.perf_counter()


class TrainingProgress(keras.callbacks.Callback):
    """Adds `learning_rate`, `tokens_seen`, `train_flops` (and `mfu`) to
    the logs.

    Put it before `keras.callbacks.TensorBoard` in the callback list so the
    values reach TensorBoard. `train_flops` is cumulative and counts the
    generator and RTD head for the steps before the model's `tau` (see
    `keras_spactor.flops.train_step_flops`), so the paper's FLOPs claim can
    be checked on any run. The step count is kept on the host: on JAX no
    device sync is needed per batch.

    Given the hardware's peak, `mfu` (model FLOPs utilisation) is the
    counted FLOPs per second over that peak: per batch, between the end of
    one batch and the next (the first batch of an epoch, which may compile,
    is not timed), and for the epoch, over its timed batches. On JAX,
    dispatch is asynchronous: the per-batch value is exact only when
    something reads each batch's logs (e.g. a progress bar or a NaN guard);
    the epoch's value is exact either way.

    Args:
        tokens_per_step: int. Encoder tokens per optimizer step
            (`batch_size * inputs_length`).
        hybrid_step_flops: int. FLOPs of a stage-1 step.
        sc_step_flops: int. FLOPs of a stage-2 (plain SC) step.
        peak_flops_per_second: optional float. The peak of all devices
            that train together (e.g. `8 * 197e12` for 8 TPU v5e chips in
            bf16); `mfu` is logged when given.

    Example:
    ```python
    progress = TrainingProgress.for_model(model, batch_size=8,
                                          inputs_length=128)
    model.fit(ds, callbacks=[progress, keras.callbacks.TensorBoard("logs")])
    ```
    """

    @classmethod
    def for_model(
        cls,
        model,
        batch_size,
        inputs_length,
        targets_length=None,
        peak_flops_per_second=None,
    ):
        """The callback for `model` trained on batches of this shape.

        Args:
            model: a `SpacTorT5`.
            batch_size: int. Examples per optimizer step.
            inputs_length: int. Encoder length.
            targets_length: int. Decoder length; default: what
                `pretraining_dataset` gives for `inputs_length` (T5's
                noise density 0.15 and mean span 3).
            peak_flops_per_second: optional float, to log `mfu`.

        Returns:
            A `TrainingProgress` with the FLOPs of a hybrid and of an SC
            step of that shape (`keras_spactor.flops.train_step_flops`).

        Example:
        ```python
        progress = TrainingProgress.for_model(model, 128, 512)
        ```
        """
        if targets_length is None:
            from keras_spactor.data import span_corruption_lengths

            targets_length = span_corruption_lengths(inputs_length)[1]
        shape = (batch_size, inputs_length, targets_length)
        return cls(
            batch_size * inputs_length,
            train_step_flops(model, *shape, hybrid=True),
            train_step_flops(model, *shape, hybrid=False),
            peak_flops_per_second=peak_flops_per_second,
        )

    def __init__(
        self,
        tokens_per_step,
        hybrid_step_flops,
        sc_step_flops,
        peak_flops_per_second=None,
    ):
        super().__init__()
        if peak_flops_per_second is not None and peak_flops_per_second <= 0:
            raise ValueError(
                "peak_flops_per_second must be positive, got "
                f"{peak_flops_per_second}"
            )
        self.tokens_per_step = int(tokens_per_step)
        self.hybrid_step_flops = int(hybrid_step_flops)
        self.sc_step_flops = int(sc_step_flops)
        self.peak_flops_per_second = peak_flops_per_second
        self._last_batch_end = None
        self._timed_flops = 0
        self._timed_seconds = 0.0
        self.step = 0
        self.train_flops = 0
        self._schedule = None
        self._constant_rate = 0.0

    def on_train_begin(self, logs=None):
        model = self.model  # one sync on JAX
        self.step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        # Read here, synced: during a JAX fit the optimizer's variables live
        # in the train state, not on the model.
        self._schedule = learning_rate_schedule(model.optimizer)
        self._constant_rate = float(
            keras.ops.convert_to_numpy(model.optimizer.learning_rate)
        )
        self.train_flops = flops_of_first_steps(
            self.step, model.tau, self.hybrid_step_flops, self.sc_step_flops
        )

    # Keras' TensorBoard logs `learning_rate` only per epoch, reading the
    # optimizer's (a device sync on JAX); this is per batch, on the host.
    def _learning_rate(self):
        if self._schedule is None:
            return self._constant_rate
        return float(keras.ops.convert_to_numpy(self._schedule(self.step)))

    def on_epoch_begin(self, epoch, logs=None):
        self._last_batch_end = None
        self._timed_flops = 0
        self._timed_seconds = 0.0

    def on_train_batch_end(self, batch, logs=None):
        model = callback_model(self)  # no sync: only Python state is read
        tau = model.tau
        flops = 0
        for _ in range(model.steps_per_execution):
            hybrid = tau is None or self.step < tau
            flops += self.hybrid_step_flops if hybrid else self.sc_step_flops
            self.step += 1
        self.train_flops += flops
        self._add_to(logs)
        if self.peak_flops_per_second is None:
            return
        now = _now()
        if self._last_batch_end is not None and logs is not None:
            seconds = now - self._last_batch_end
            self._timed_flops += flops
            self._timed_seconds += seconds
            logs["mfu"] = self._utilisation(flops, seconds)
        self._last_batch_end = now

    def on_epoch_end(self, epoch, logs=None):
        self._add_to(logs)
        if logs is not None and self._timed_seconds > 0:
            logs["mfu"] = self._utilisation(
                self._timed_flops, self._timed_seconds
            )

    def _utilisation(self, flops, seconds):
        return flops / max(seconds, 1e-9) / self.peak_flops_per_second

    def _add_to(self, logs):
        if logs is not None:
            logs["learning_rate"] = self._learning_rate()
            logs["tokens_seen"] = float(self.step * self.tokens_per_step)
            logs["train_flops"] = float(self.train_flops)
