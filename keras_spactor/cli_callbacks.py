import math
import os

import keras

from keras_spactor import file_paths
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
    """
    if logs is None or tau is None or epoch_start < tau:
        return logs
    return {k: v for k, v in logs.items() if k not in HYBRID_ONLY_METRICS}


class RunLogger(keras.callbacks.Callback):
    """Keeps what `summary.json` reports: final logs, switch, tokens, FLOPs.

    The final logs are the last epoch's, without the stage-1 metrics when
    that epoch ran no stage-1 step (see `stage_logs`).

    Args:
        args: the parsed `pretrain` arguments.
        progress: the run's `TrainingProgress` callback (step, FLOPs).
    """

    def __init__(self, args, progress):
        super().__init__()
        self.args = args
        self.progress = progress
        self.last_logs = {}
        self.epoch_start = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = self.progress.step

    def on_epoch_end(self, epoch, logs=None):
        logs = stage_logs(logs or {}, self.epoch_start, self._model.tau)
        self.last_logs = {k: float(v) for k, v in logs.items()}

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


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written; the ones already saved are
    intact."""


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves the full training state at each epoch end, atomically, and
    keeps the one before it.

    The model is written to a temporary file next to `path` and then renamed
    over it, so a process killed at any moment (SIGKILL included) leaves the
    previous checkpoint intact: nothing is ever half-written. The checkpoint
    it replaces is kept as `previous_path(path)`, in case the newer one is
    damaged later. A failed write (a full disk) removes the temporary file,
    touches neither checkpoint and raises `CheckpointWriteError`. An epoch
    whose loss is not finite is not saved.

    `path` may be a `gs://` URL. GCS has no rename, but writing or copying
    one object is atomic: the new checkpoint is uploaded as a temporary
    object, the current one copied to `previous_path(path)`, and only then
    the temporary copied over `path` and deleted.

    Args:
        path: str. The `.keras` checkpoint file (local or a `tf.io.gfile`
            URL).
        before_save: optional callable, called with the step before each
            save, e.g. to save what must exist whenever the checkpoint does.
        on_saved: optional callable, called after each save with the steps
            of the checkpoints kept (the previous one's first, if any), e.g.
            to drop what only older checkpoints needed.

    Example:
    ```python
    saver = AtomicCheckpoint("runs/x/checkpoint.keras")
    model.fit(dataset, epochs=4, steps_per_epoch=100, callbacks=[saver])
    ```
    """

    def __init__(self, path, before_save=None, on_saved=None):
        super().__init__()
        self.path = path
        self.before_save = before_save
        self.on_saved = on_saved
        self.saved_step = None
        # Steps of the checkpoints on disk, oldest first (at most two).
        self.saved_steps = []

    def on_epoch_end(self, epoch, logs=None):
        if not loss_is_finite(logs):
            return
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self.save(step)

    def save(self, step, model=None):
        """Writes `model`'s state (default: the fitted model's) now, taken
        at optimizer step `step`."""
        model = model if model is not None else self.model
        temporary = self.path + ".partial.keras"
        try:
            if self.before_save is not None:
                self.before_save(step)
            model.save(temporary)
        except Exception as error:
            if file_paths.exists(temporary):
                file_paths.remove(temporary)
            kept = (
                f"{self.path} (step {self.saved_step}) is intact"
                if self.saved_step is not None
                else "earlier checkpoints are intact"
            )
            raise CheckpointWriteError(
                f"could not write the checkpoint of step {step} ({error}); "
                f"{kept}"
            ) from error
        try:
            if file_paths.isfile(self.path):
                # Keep the previous one first: at every moment `path`
                # holds a whole checkpoint, the old or the new.
                file_paths.keep_copy(self.path, previous_path(self.path))
            file_paths.replace(temporary, self.path)
        except OSError as error:  # e.g. the bucket went away
            raise CheckpointWriteError(
                f"could not move the checkpoint of step {step} into place "
                f"({error}); it is whole in {temporary}, and {self.path} "
                "holds it or the one before"
            ) from error
        self.saved_step = step
        self.saved_steps = (self.saved_steps + [step])[-2:]
        if self.on_saved is not None:
            self.on_saved(list(self.saved_steps))


def previous_path(path):
    """Where `AtomicCheckpoint` keeps the checkpoint before `path`."""
    root, extension = os.path.splitext(path)
    return f"{root}.previous{extension}"


def loss_is_finite(logs):
    loss = (logs or {}).get("loss")
    return loss is None or math.isfinite(float(loss))


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops `fit` at the first step whose loss is NaN or infinite.

    Keras's `TerminateOnNaN` also stops, but the epoch still ends and
    callbacks such as a checkpoint would save the broken state; this one
    records the step (`bad_step`) so the caller can refuse to save.

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
        return stage_logs(logs, self._epoch_start, self._model.tau)
