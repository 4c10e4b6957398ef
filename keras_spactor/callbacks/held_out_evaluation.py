import keras

from keras_spactor._keras_compat import callback_model


class HeldOutEvaluation(keras.callbacks.Callback):
    """Measures held-out batches every `every` optimizer steps.

    At each step that is a multiple of `every`, it calls
    `keras_spactor.evaluation.validation_metrics` (the held-out
    span-corruption loss, the encoder's use and its token cosine; the
    model's metric trackers are left alone, so the training logs are not
    disturbed), keeps the result in `results` and writes it to TensorBoard
    in `log_dir`. Not `fit`'s `validation_data`: Keras validates at epoch
    ends only (`validation_freq` counts epochs, and a run's epochs are its
    checkpoint intervals), and `evaluate` reports no encoder use.

    Args:
        dataset: finite held-out batches `(x, y, sample_weight)`, read
            afresh at each evaluation (e.g. `pretraining_dataset(...,
            split="validation", shuffle_buffer=None, repeat=False)`).
        every: int. Steps between evaluations.
        steps: int or `None`. Batches per evaluation.
        log_dir: str or `None`. A TensorBoard folder (`gs://` too).

    Example:
    ```python
    evaluation = HeldOutEvaluation(held_out, every=100, steps=10,
                                   log_dir="runs/x/logs/validation")
    model.fit(dataset, epochs=4, steps_per_epoch=100,
              callbacks=[evaluation])
    evaluation.results[-1]  # {"step": 400, "validation_sc_loss": ...}
    ```
    """

    def __init__(self, dataset, every, steps=None, log_dir=None):
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.dataset = dataset
        self.every = every
        self.steps = steps
        self.log_dir = log_dir
        self.results = []
        self._step = 0
        self._writer = None

    def on_train_begin(self, logs=None):
        iterations = self.model.optimizer.iterations
        self._step = int(keras.ops.convert_to_numpy(iterations))

    def on_train_batch_end(self, batch, logs=None):
        # Counted, not read from the optimizer: no sync on JAX but here.
        before = self._step
        self._step += callback_model(self).steps_per_execution
        if self._step // self.every > before // self.every:
            self.evaluate()

    def evaluate(self):
        """Measures the held-out batches now; returns and keeps the dict."""
        from keras_spactor.evaluation import validation_metrics

        # `self.model`: on JAX, the weights `fit` trained so far.
        metrics = validation_metrics(self.model, self.dataset, self.steps)
        self.results.append({"step": self._step, **metrics})
        if self.log_dir is not None:
            self._write(metrics)
        return self.results[-1]

    def _write(self, metrics):
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default(step=self._step):
            for name, value in metrics.items():
                tf.summary.scalar(name, value)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
