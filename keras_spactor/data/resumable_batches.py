"""An input stream whose position is saved next to the model's checkpoints."""

import os
import re
import threading
import warnings

import tensorflow as tf

from keras_spactor import file_paths

_STATE = re.compile(r"step-(\d+)")
# Written last: a state folder is whole once its index is there.
_INDEX = "state.index"


class ResumableBatches:
    """Batches of a `tf.data` pipeline for `fit`, resumable in constant time.

    `fit` reads the generator `batches()`. Before it hands out batch `k`, a
    multiple of `save_every`, the `tf.data` iterator's state (file
    positions, shuffle buffers, the chunk counter that seeds the noise
    masks) is written to `directory/step-k`. A model checkpointed at step
    `k` has consumed exactly batches `0 … k-1`, so `resume(k)` continues
    the stream where an uninterrupted run would be, at the cost of reading
    one state whatever `k` is, where `dataset.skip(k)` would read, tokenize
    and corrupt every example before it again (t5x checkpoints its
    `tf.data` iterator in the same way). States are written whole or not at
    all (to a temporary directory, then renamed; on `gs://`, where folders
    have no rename, its files are copied in with the index last, and a
    state counts once its index is there). A pipeline that cannot
    be checkpointed (one built on `Dataset.from_generator`) still trains,
    with a warning; its resume reads the stream up to the step again.

    Args:
        dataset: a `tf.data.Dataset` of batches, e.g. `pretraining_dataset`.
        directory: str. Where the states are written: a local folder or a
            `tf.io.gfile` URL such as `gs://bucket/run/data_state`.
        save_every: int. Save the position before every batch whose index
            is a multiple of this (the checkpoint interval).
        save: bool. False reads without writing (the processes of a
            multi-process run but the one that checkpoints: they all read
            the same stream and resume from its saved positions).

    Example:
    ```python
    batches = ResumableBatches(dataset, "runs/x/data_state", save_every=100)
    replayed = batches.resume(steps_done)  # 0 if a state of that step exists
    model.fit(batches.batches(), epochs=10, steps_per_epoch=100,
              initial_epoch=steps_done // 100)
    batches.keep([steps_done_now])  # drop the states no checkpoint needs
    ```
    """

    def __init__(self, dataset, directory, save_every, save=True):
        if save_every < 1:
            raise ValueError(f"save_every must be >= 1, got {save_every}")
        options = tf.data.Options()
        # The document counters and the tokenizer's resource live outside
        # the pipeline; the state saved is the iterator's own position.
        options.experimental_external_state_policy = (
            tf.data.experimental.ExternalStatePolicy.IGNORE
        )
        self._iterator = iter(dataset.with_options(options))
        self._checkpoint = tf.train.Checkpoint(iterator=self._iterator)
        self.directory = directory
        self.save_every = save_every
        self.position = 0
        # False once the pipeline turned out not to be checkpointable.
        self.saving = save
        # `fit` may read batches on another thread than its callbacks'.
        self._lock = threading.Lock()

    def saved_steps(self):
        """The steps whose position is saved, ascending."""
        if not file_paths.isdir(self.directory):
            return []
        names = file_paths.listdir(self.directory)
        return sorted(
            int(match.group(1))
            for match in map(_STATE.fullmatch, names)
            if match and self._is_whole(int(match.group(1)))
        )

    def _is_whole(self, step):
        if not file_paths.is_remote(self.directory):
            return True  # renamed into place whole
        state = os.path.dirname(self._state_prefix(step))
        return file_paths.exists(file_paths.join(state, _INDEX))

    def _state_prefix(self, step):
        return file_paths.join(self.directory, f"step-{step}", "state")

    def resume(self, step):
        """Moves the stream to batch `step` from the newest state at or
        before it, reading the batches in between.

        Returns:
            The number of batches read again: 0 when `step`'s own state was
            saved, `step` when no state was (a run from an earlier version).

        Raises:
            ValueError: naming the state that cannot be read (damaged, or
                of another pipeline).
        """
        earlier = [s for s in self.saved_steps() if s <= step]
        if earlier:
            state = self._state_prefix(earlier[-1])
            try:
                self._checkpoint.read(state).assert_consumed()
            except Exception as error:  # TF raises many kinds here
                reason = (str(error).strip().splitlines() or [""])[0][:200]
                raise ValueError(
                    f"the saved input position {os.path.dirname(state)} "
                    f"cannot be read ({type(error).__name__}: {reason}); "
                    "delete that directory to read the stream up to the "
                    "step again instead"
                ) from error
            self.position = earlier[-1]
        replayed = step - self.position
        for _ in range(replayed):
            next(self._iterator)
        self.position = step
        return replayed

    def keep(self, steps):
        """Deletes the states of steps before `max(steps)` not in `steps`
        (those saved ahead of the newest checkpoint stay)."""
        newest = max(steps)
        for step in self.saved_steps():
            if step < newest and step not in steps:
                file_paths.rmtree(os.path.dirname(self._state_prefix(step)))

    def discard_after(self, step):
        """Deletes the states saved ahead of `step` (at the end of a run)."""
        for saved in self.saved_steps():
            if saved > step:
                file_paths.rmtree(os.path.dirname(self._state_prefix(saved)))

    def save_position(self, step):
        """Saves the position of batch `step` if the stream stands there and
        it is a multiple of `save_every` (to call before checkpointing the
        model at `step`, when `fit` has not asked for batch `step` yet)."""
        with self._lock:
            if self.position == step and step % self.save_every == 0:
                self._save()

    def _save(self):
        final = os.path.dirname(self._state_prefix(self.position))
        if not self.saving or self.position in self.saved_steps():
            return  # e.g. just resumed
        temporary = final + ".partial"
        if file_paths.exists(temporary):
            file_paths.rmtree(temporary, ignore_errors=True)
        try:
            self._checkpoint.write(file_paths.join(temporary, "state"))
        except tf.errors.UnimplementedError as error:
            # A source that cannot be checkpointed (e.g. a dataset from a
            # Python generator): train on, and resume by reading again.
            file_paths.rmtree(temporary, ignore_errors=True)
            self.saving = False
            reason = str(error).split("}}")[-1].split("[Op:")[0].strip()
            warnings.warn(
                f"The input stream's position cannot be saved ({reason}); "
                "a resume will read the stream up to its step again.",
                stacklevel=2,
            )
            return
        file_paths.publish_directory(temporary, final, last=(_INDEX,))

    def batches(self):
        """The stream from the current position, as numpy batches."""
        while True:
            with self._lock:
                if self.position % self.save_every == 0:
                    self._save()
                try:
                    batch = next(self._iterator)
                except StopIteration:
                    return
                self.position += 1
            yield tf.nest.map_structure(lambda t: t.numpy(), batch)
