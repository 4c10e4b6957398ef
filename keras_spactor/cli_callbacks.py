import keras


class RunLogger(keras.callbacks.Callback):
    """Keeps what `summary.json` reports: losses, stage switch, tokens.

    Args:
        args: the parsed `pretrain` arguments.
        tokens_per_step: int. Encoder tokens per optimizer step.
    """

    def __init__(self, args, tokens_per_step):
        super().__init__()
        self.args = args
        self.tokens_per_step = tokens_per_step
        self.last_logs = {}
        self.switch_seen_at = None
        self._step = 0

    def on_train_begin(self, logs=None):
        self._step = int(
            keras.ops.convert_to_numpy(self.model.optimizer.iterations)
        )

    def on_train_batch_end(self, batch, logs=None):
        self._step += self.model.steps_per_execution
        logs = logs or {}
        if self.switch_seen_at is None and float(logs.get("stage", 1)) == 2:
            self.switch_seen_at = self._step

    def on_epoch_end(self, epoch, logs=None):
        self.last_logs = {k: float(v) for k, v in (logs or {}).items()}

    def summary(self, model, tau, wall_time):
        steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        return {
            "steps": steps,
            "tau": tau,
            "switch_step": tau if tau is not None and tau <= steps else None,
            "final_logs": self.last_logs,
            "tokens_seen": steps * self.tokens_per_step,
            "wall_time_s": round(wall_time, 1),
            "backend": keras.backend.backend(),
            "preset": self.args.preset,
            "data": self.args.data,
        }
