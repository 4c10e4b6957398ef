"""What `finetune` checks and reads before it loads a model: its settings,
the labelled task and the step budget.

Each problem raises `FinetuningInputError`, so a run with a bad setting or
an unreadable file stops before any model is loaded or anything compiles.
"""

import json
import math
import os
import shutil
import tempfile

from keras_spactor import file_paths
from keras_spactor.evaluation.labelled_tasks import read_task
from keras_spactor.evaluation.rank_classification import SCORINGS
from keras_spactor.labelled_data import labelled_file

# The default recipe, measured on SST-2 and TREC with a from-scratch tiny
# model (BENCHMARKS.md, "Fine-tuning's default recipe and rank scoring").
DEFAULT_STEPS = 300
DEFAULT_LEARNING_RATE = 3e-4
DEFAULT_BATCH_SIZE = 16
DEFAULT_DROPOUT = 0.1  # T5's fine-tuning dropout
# "fresh": fine-tune the pre-trained encoder under a newly initialised
# decoder (see `keras_spactor.models.t5x_initialization.reinitialize_decoder`).
DECODERS = ("pretrained", "fresh")


class FinetuningInputError(ValueError):
    """A setting or labelled file that `finetune` cannot use, found before
    any model is loaded.

    Settings are named in backticks as `finetune` names them
    (`learning_rate`); `keras-spactor finetune` prints the same text with
    its flags (`--learning-rate`).

    Example:
    ```python
    try:
        finetune("runs/demo/preset", "train.tsv", "eval.tsv", "runs/ft",
                 dropout=1.0)
    except FinetuningInputError as error:
        print(error)  # `dropout` must be in [0, 1), got 1.0
    ```
    """


def check_finetuning_settings(preset, learning_rate, dropout, scoring, decoder):
    """Raise `FinetuningInputError` for a setting `finetune` cannot train
    with (a fresh decoder needs a preset with untied embeddings).

    Args:
        preset: str. The preset; a local directory's `config.json` is read
            for `decoder="fresh"`.
        learning_rate: float. Must be positive.
        dropout: float. Must be in [0, 1).
        scoring: str. One of `SCORINGS`.
        decoder: str. One of `DECODERS`.

    Example:
    ```python
    check_finetuning_settings("runs/demo/preset", 3e-4, 0.1, "summed",
                              "fresh")
    ```
    """
    if scoring not in SCORINGS:
        raise FinetuningInputError(
            f"scoring must be one of {SCORINGS}, got {scoring!r}"
        )
    if decoder not in DECODERS:
        raise FinetuningInputError(
            f"decoder must be one of {DECODERS}, got {decoder!r}"
        )
    if learning_rate <= 0:
        raise FinetuningInputError(
            f"`learning_rate` must be positive, got {learning_rate}"
        )
    if not 0 <= dropout < 1:
        raise FinetuningInputError(
            f"`dropout` must be in [0, 1), got {dropout}"
        )
    # A preset that is not a local folder (a keras-hub handle) is checked
    # once loaded, by `reinitialize_decoder`.
    if decoder == "fresh" and os.path.isdir(preset) and ties_embeddings(preset):
        raise FinetuningInputError(
            f"`decoder` fresh: {preset} ties its output head to the input "
            "embedding (T5 v1.0), so the decoder cannot be drawn anew "
            "without losing the encoder's embedding"
        )


def ties_embeddings(preset):
    """Whether a keras-hub T5 preset directory ties its embeddings (reads
    its `config.json`; `FinetuningInputError` if it cannot)."""
    try:
        with open(os.path.join(preset, "config.json")) as f:
            config = json.load(f)["config"]
    except (OSError, ValueError, KeyError) as error:
        raise FinetuningInputError(
            f"{preset}: no readable keras-hub config.json ({error})"
        ) from error
    return bool(config.get("tie_embedding_weights", False))


def read_labelled_task(
    train, validation, output_dir, max_train=None, max_validation=None
):
    """The training and evaluation examples of two labelled sources.

    A `tfds:` split is written to `output_dir/data/<split>.tsv` first
    (through a temporary local folder when `output_dir` is a URL), and that
    folder is removed again if writing fails, so that a rerun does not find
    it.

    Args:
        train, validation: str. A `label<TAB>text` TSV path,
            `builtin:<name>[:<split>]` or `tfds:<name>[:<split>]` (see
            `keras_spactor.labelled_data`); a named split wins over
            `"train"` and `"validation"`.
        output_dir: str. The fine-tuning run's folder or `gs://` URL.
        max_train, max_validation: optional ints: keep only the first
            examples of each.

    Returns:
        `((train_labels, train_texts), (eval_labels, eval_texts))`.

    Raises:
        FinetuningInputError: a source cannot be read, a line is malformed
            or an evaluation label never occurs in training.

    Example:
    ```python
    train, evaluation = read_labelled_task(
        "builtin:sentiment-tiny", "builtin:sentiment-tiny", "runs/ft"
    )
    ```
    """
    data_dir = os.path.join(output_dir, "data")
    remote = file_paths.is_remote(data_dir)
    if remote:
        # TFDS splits are written and read as local TSV files.
        data_dir = tempfile.mkdtemp(prefix="keras-spactor-data-")
    # Only a folder made here is removed on failure, never one that was
    # there before.
    made_here = remote or not os.path.exists(data_dir)
    try:
        try:
            train_path = labelled_file(train, "train", data_dir)
            validation_path = labelled_file(validation, "validation", data_dir)
        except BaseException:
            # A TFDS split half written (no network, a bad name) must not
            # make the rerun find its output folder taken.
            if made_here:
                shutil.rmtree(data_dir, ignore_errors=True)
            raise
        return read_task(train_path, validation_path, max_train, max_validation)
    except (OSError, ValueError) as error:
        raise FinetuningInputError(str(error)) from error
    finally:
        if remote:
            shutil.rmtree(data_dir, ignore_errors=True)


def training_steps(steps, epochs, train_examples, batch_size):
    """The step budget: `steps` if given, else `epochs` passes over the
    training set, else `DEFAULT_STEPS`."""
    if steps:
        return int(steps)
    if epochs:
        return int(epochs) * math.ceil(train_examples / batch_size)
    return DEFAULT_STEPS


def default_warmup_steps(steps):
    """A tenth of the run, the usual AdamW warmup."""
    return steps // 10


def finetuning_steps(steps, epochs, warmup_steps, train_examples, batch_size):
    """`(steps, warmup_steps)` of a fine-tuning run.

    Args:
        steps: optional int. Optimizer steps (wins over `epochs`).
        epochs: optional int. Passes over the training set.
        warmup_steps: optional int. Default: a tenth of the steps.
        train_examples: int. Size of the training set.
        batch_size: int. Examples per step.

    Raises:
        FinetuningInputError: the warmup is longer than the run.

    Example:
    ```python
    finetuning_steps(None, 2, None, 100, 16)  # (14, 1)
    ```
    """
    steps = training_steps(steps, epochs, train_examples, batch_size)
    if warmup_steps is None:
        warmup_steps = default_warmup_steps(steps)
    if not 0 <= warmup_steps <= steps:
        raise FinetuningInputError(
            f"`warmup_steps` {warmup_steps} is not in [0, {steps} steps]"
        )
    return steps, warmup_steps
