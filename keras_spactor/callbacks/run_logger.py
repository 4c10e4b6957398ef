import keras

from keras_spactor._keras_compat import callback_model
from keras_spactor.callbacks.stage_progbar_logger import stage_logs


class RunLogger(keras.callbacks.Callback):
    """Keeps what a run's `summary.json` reports: final logs, switch,
    tokens, FLOPs.

    The final logs are the last epoch's, without the stage-1 metrics when
    that epoch ran no stage-1 step (see `stage_logs`). Keras's `History`
    keeps every epoch's logs but not the switch, tokens or FLOPs.

    Args:
        progress: the run's `TrainingProgress` callback (step, FLOPs).
        preset: str. The preset the run started from (reported as is).
        data: str. The run's text source (reported as is).

    Example:
    ```python
    logger = RunLogger(progress, "spactor_t5_tiny", "builtin:python-docs")
    model.fit(dataset, epochs=2, callbacks=[progress, logger])
    summary = logger.summary(model, tau=60, wall_time=12.5)
    ```
    """

    def __init__(self, progress, preset, data):
        super().__init__()
        self.progress = progress
        self.preset = preset
        self.data = data
        self.last_logs = {}
        self.epoch_start = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = self.progress.step

    def on_epoch_end(self, epoch, logs=None):
        logs = stage_logs(
            logs or {}, self.epoch_start, callback_model(self).tau
        )
        self.last_logs = {k: float(v) for k, v in logs.items()}

    def summary(self, model, tau, wall_time):
        """The summary dict of `model`'s run so far (JSON-serialisable)."""
        steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        return {
            "steps": steps,
            "tau": tau,
            "switch_step": tau if tau is not None and tau <= steps else None,
            "final_logs": self.last_logs,
            "tokens_seen": steps * self.progress.tokens_per_step,
            "train_flops": self.progress.train_flops,
            "flops_per_step": {
                "hybrid": self.progress.hybrid_step_flops,
                "span_corruption": self.progress.sc_step_flops,
            },
            "wall_time_s": round(wall_time, 1),
            "backend": keras.backend.backend(),
            "preset": self.preset,
            "data": self.data,
        }
