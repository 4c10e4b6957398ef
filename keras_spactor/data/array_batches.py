"""Span-corruption batches stored once as arrays, read without TensorFlow."""

import numpy as np

from keras_spactor import file_paths
from keras_spactor.models.spactor_t5_preprocessor import as_preprocessor

ARRAY_BATCHES_SUFFIX = ".npz"


def is_array_batches(spec):
    """Whether a `data` spec names an array-batches file (`.npz`)."""
    return spec.endswith(ARRAY_BATCHES_SUFFIX)


def write_array_batches(path, batches):
    """Writes batches to an array-batches file, in order.

    The file holds two arrays, `inputs` (the encoder ids) and `targets`,
    one row per example, int16 where every id fits, else int32.
    `ArrayBatches` reads them back as the same batches. To store the
    batches a `PretrainingRun` reads from text, seed as the run does
    before it builds its dataset (`keras.utils.set_random_seed(seed)`: the
    shuffles depend on the global seed too).

    Args:
        path: str. The `.npz` file to write (local or `gs://`).
        batches: numpy `(x, y, sample_weight)` batches, e.g.
            `pretraining_dataset(...).take(n).as_numpy_iterator()`.

    Returns:
        The number of examples written.

    Example:
    ```python
    keras.utils.set_random_seed(0)
    dataset = keras_spactor.data.pretraining_dataset(
        "builtin:python-docs", model.preprocessor, batch_size=8, seed=0
    )
    write_array_batches("batches.npz", dataset.take(100).as_numpy_iterator())
    # A run on them trains as one on "builtin:python-docs" with seed 0:
    config = keras_spactor.PretrainingConfig(data="batches.npz", steps=100)
    ```
    """
    inputs, targets = [], []
    for x, y, _ in batches:
        inputs.append(x["encoder_token_ids"])
        targets.append(y)
    inputs, targets = np.concatenate(inputs), np.concatenate(targets)
    fits = max(inputs.max(), targets.max()) < np.iinfo("int16").max
    ids = "int16" if fits else "int32"
    with file_paths.open_file(path, "wb") as f:
        np.savez_compressed(
            f, inputs=inputs.astype(ids), targets=targets.astype(ids)
        )
    return len(inputs)


def _read_arrays(path):
    if not file_paths.exists(path):
        raise FileNotFoundError(f"no array-batches file at {path}")
    with file_paths.open_file(path, "rb") as f:
        with np.load(f) as arrays:
            if not {"inputs", "targets"} <= set(arrays.files):
                raise ValueError(
                    f"{path} holds no `inputs` and `targets` arrays"
                )
            return arrays["inputs"], arrays["targets"]


class ArrayBatches:
    """Batches of an array-batches file for `fit`, resumable at any step.

    Batch `k` is rows `k * batch_size` to `(k + 1) * batch_size`, so the
    data position of a model checkpointed at step `k` is `k` itself:
    nothing is saved next to the checkpoints, and `resume(k)` reads
    nothing again. It offers the methods of `ResumableBatches` that a run
    calls (those that save a position do nothing).

    Args:
        path: str. A file of `write_array_batches`.
        batch_size: int. Examples per batch.
        preprocessor: the `SpacTorT5Preprocessor` (or T5 tokenizer) of the
            run, whose ids make the batches and whose lengths the rows
            must have.

    Raises:
        ValueError: for rows of other lengths than the preprocessor's.
        FileNotFoundError: when `path` is not there.

    Example:
    ```python
    batches = ArrayBatches("batches.npz", 8, model.preprocessor)
    batches.resume(steps_done)
    model.fit(batches.batches(), steps_per_epoch=..., epochs=...)
    ```
    """

    def __init__(self, path, batch_size, preprocessor):
        self.preprocessor = as_preprocessor(preprocessor)
        self.inputs, self.targets = _read_arrays(path)
        self.batch_size = batch_size
        self.position = 0
        lengths = (self.inputs.shape[1], self.targets.shape[1])
        expected = (
            self.preprocessor.inputs_length,
            self.preprocessor.targets_length,
        )
        if lengths != expected:
            raise ValueError(
                f"{path} holds rows of {lengths[0]} inputs and {lengths[1]}"
                f" targets; the run's are {expected[0]} and {expected[1]}"
            )

    def __len__(self):
        """The number of whole batches."""
        return len(self.inputs) // self.batch_size

    def resume(self, step):
        """Moves to batch `step`; returns 0 (no batch is read again)."""
        self.position = step
        return 0

    def save_position(self, step):
        """Nothing to save: the position is the step."""

    def keep(self, steps):
        """Nothing saved, nothing to delete."""

    def discard_after(self, step):
        """Nothing saved, nothing to delete."""

    def batches(self):
        """The batches from the current position to the last whole one."""
        size = self.batch_size
        while self.position < len(self):
            rows = slice(self.position * size, (self.position + 1) * size)
            self.position += 1
            yield self.preprocessor.model_batch(
                self.inputs[rows], self.targets[rows]
            )


def check_array_batches(path, batch_size, steps, inputs_length):
    """Checks that an array-batches file holds `steps` batches of
    `inputs_length` rows, before any long work.

    Raises:
        ValueError: saying what the file holds.
        FileNotFoundError: when `path` is not there.
    """
    inputs, _ = _read_arrays(path)
    if inputs.shape[1] != inputs_length:
        raise ValueError(
            f"{path} holds inputs of length {inputs.shape[1]}, not "
            f"{inputs_length}"
        )
    if len(inputs) < steps * batch_size:
        raise ValueError(
            f"{path} holds {len(inputs) // batch_size} batches of "
            f"{batch_size}, fewer than the {steps} steps"
        )
