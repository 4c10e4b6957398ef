import os

import keras

from keras_spactor import file_paths
from keras_spactor.callbacks.stop_on_non_finite_loss import loss_is_finite
from keras_spactor.errors import CheckpointWriteError


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves the full training state at each epoch end, atomically, and
    keeps the one before it.

    The model is written to a temporary file next to `path` and then renamed
    over it, so a process killed at any moment (SIGKILL included) leaves the
    previous checkpoint intact: nothing is ever half-written. The checkpoint
    it replaces is kept as `previous_path(path)`, in case the newer one is
    damaged later. A failed write (a full disk) removes the temporary file,
    touches neither checkpoint and raises `CheckpointWriteError`. An epoch
    whose loss is not finite is not saved. Keras's `ModelCheckpoint` and
    `BackupAndRestore` write over their file in place, so a kill mid-write
    can leave no whole state, and neither saves the data position.

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
