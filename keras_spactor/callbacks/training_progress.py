import keras

from keras_spactor._keras_compat import learning_rate_schedule


class TrainingProgress(keras.callbacks.Callback):
    """Adds `learning_rate`, `tokens_seen` and `train_flops` to the logs.

    Put it before `keras.callbacks.TensorBoard` in the callback list so the
    values reach TensorBoard. `train_flops` is cumulative and counts the
    generator and RTD head for the steps before the model's `tau` (see
    `keras_spactor.flops.train_step_flops`), so the paper's FLOPs claim can
    be checked on any run. The step count is kept on the host: on JAX no
    device sync is needed per batch.

    Args:
        tokens_per_step: int. Encoder tokens per optimizer step
            (`batch_size * inputs_length`).
        hybrid_step_flops: int. FLOPs of a stage-1 step.
        sc_step_flops: int. FLOPs of a stage-2 (plain SC) step.

    Example:
    ```python
    progress = TrainingProgress.for_model(model, batch_size=8,
                                          inputs_length=128)
    model.fit(ds, callbacks=[progress, keras.callbacks.TensorBoard("logs")])
    ```
    """

    @classmethod
    def for_model(cls, model, batch_size, inputs_length, targets_length=None):
        """The callback for `model` trained on batches of this shape.

        Args:
            model: a `SpacTorT5`.
            batch_size: int. Examples per optimizer step.
            inputs_length: int. Encoder length.
            targets_length: int. Decoder length; default: what
                `pretraining_dataset` gives for `inputs_length` (T5's
                noise density 0.15 and mean span 3).

        Returns:
            A `TrainingProgress` with the FLOPs of a hybrid and of an SC
            step of that shape (`keras_spactor.flops.train_step_flops`).

        Example:
        ```python
        progress = TrainingProgress.for_model(model, 128, 512)
        ```
        """
        from keras_spactor.flops import train_step_flops

        if targets_length is None:
            from keras_spactor.data import span_corruption_lengths

            targets_length = span_corruption_lengths(inputs_length)[1]
        shape = (batch_size, inputs_length, targets_length)
        return cls(
            batch_size * inputs_length,
            train_step_flops(model, *shape, hybrid=True),
            train_step_flops(model, *shape, hybrid=False),
        )

    def __init__(self, tokens_per_step, hybrid_step_flops, sc_step_flops):
        super().__init__()
        self.tokens_per_step = int(tokens_per_step)
        self.hybrid_step_flops = int(hybrid_step_flops)
        self.sc_step_flops = int(sc_step_flops)
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
        tau = model.tau
        hybrid_steps = self.step if tau is None else min(self.step, tau)
        self.train_flops = (
            hybrid_steps * self.hybrid_step_flops
            + (self.step - hybrid_steps) * self.sc_step_flops
        )

    def _learning_rate(self):
        if self._schedule is None:
            return self._constant_rate
        return float(keras.ops.convert_to_numpy(self._schedule(self.step)))

    def on_train_batch_end(self, batch, logs=None):
        model = self._model  # no sync: only Python state is read
        tau = model.tau
        for _ in range(model.steps_per_execution):
            hybrid = tau is None or self.step < tau
            self.train_flops += (
                self.hybrid_step_flops if hybrid else self.sc_step_flops
            )
            self.step += 1
        self._add_to(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._add_to(logs)

    def _add_to(self, logs):
        if logs is not None:
            logs["learning_rate"] = self._learning_rate()
            logs["tokens_seen"] = float(self.step * self.tokens_per_step)
            logs["train_flops"] = float(self.train_flops)
