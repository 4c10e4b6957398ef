import keras


# Keras has no inverse square root schedule (`InverseTimeDecay` is 1/t).
@keras.saving.register_keras_serializable(package="keras_spactor")
class InverseSquareRootSchedule(
    keras.optimizers.schedules.LearningRateSchedule
):
    """T5's learning rate: constant for `warmup_steps`, then `1/sqrt(step)`.

    `rate(step) = peak * sqrt(warmup_steps / max(step, warmup_steps))`; with
    `peak = 0.01` and `warmup_steps = 10_000` this is T5's
    `1 / sqrt(max(step, 10_000))`.

    Args:
        peak: float. The constant rate of the first `warmup_steps`.
        warmup_steps: int. Steps at the constant rate.

    Example:
    ```python
    keras.optimizers.Adafactor(InverseSquareRootSchedule(0.01, 10_000))
    ```
    """

    def __init__(self, peak, warmup_steps):
        self.peak = float(peak)
        self.warmup_steps = max(1, int(warmup_steps))

    def __call__(self, step):
        step = keras.ops.maximum(
            keras.ops.cast(step, "float32"), float(self.warmup_steps)
        )
        return self.peak * keras.ops.sqrt(self.warmup_steps / step)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps}
