import os

import keras


class RunLogger(keras.callbacks.Callback):
    """Keeps what `summary.json` reports: final logs, switch, tokens, FLOPs.

    Args:
        args: the parsed `pretrain` arguments.
        progress: the run's `TrainingProgress` callback (step, FLOPs).
    """

    def __init__(self, args, progress):
        super().__init__()
        self.args = args
        self.progress = progress
        self.last_logs = {}

    def on_epoch_end(self, epoch, logs=None):
        self.last_logs = {k: float(v) for k, v in (logs or {}).items()}

    def summary(self, model, tau, wall_time):
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
            "preset": self.args.preset,
            "data": self.args.data,
        }


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves the full training state at each epoch end, atomically.

    The model is written to a temporary file next to `path` and then renamed
    over it, so a process killed at any moment (SIGKILL included) leaves the
    previous checkpoint intact: nothing is ever half-written.

    Args:
        path: str. The `.keras` checkpoint file.
    """

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        temporary = self.path + ".partial.keras"
        self.model.save(temporary)
        os.replace(temporary, self.path)
