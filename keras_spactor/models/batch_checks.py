"""Checks on the first batch, so bad data fails before anything compiles."""

import sys

import keras
import numpy as np

from keras_spactor.models.spactor_t5_preprocessor import MODEL_INPUT_KEYS

# The batch format's owner is the preprocessor module.
REQUIRED_INPUT_KEYS = MODEL_INPUT_KEYS


def check_structure(x, y):
    """Raise a clear error when `x` lacks the T5 inputs or `y` is absent."""
    if not isinstance(x, dict):
        raise ValueError(
            "SpacTorT5 expects batches `(x, y[, sample_weight])` with `x` a "
            f"dict of {list(REQUIRED_INPUT_KEYS)}; got x of type "
            f"{type(x).__name__}."
        )
    missing = [k for k in REQUIRED_INPUT_KEYS if k not in x]
    if missing:
        raise ValueError(
            f"The batch is missing the inputs {missing}; SpacTorT5 needs "
            f"{list(REQUIRED_INPUT_KEYS)} (got {sorted(x)})."
        )
    if y is None:
        raise ValueError("SpacTorT5 needs span-corruption targets `y`.")


def _is_tf_dataset(x):
    # Without TensorFlow imported, `x` cannot be a `tf.data.Dataset`.
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(x, tf.data.Dataset)


def _first_batch(x, y):
    if _is_tf_dataset(x):
        data = next(iter(x.take(1)), None)
        if data is None:
            raise ValueError("The training dataset is empty.")
        return keras.utils.unpack_x_y_sample_weight(data)[:2]
    return x, y


def check_first_batch(model, x, y=None):
    """Structure and id ranges of the first batch `fit` would see.

    Args:
        model: the `SpacTorT5`.
        x: what `fit` received (a `tf.data.Dataset`, or a dict of arrays).
        y: targets, when `x` is not a dataset.
    """
    if x is None or not (isinstance(x, dict) or _is_tf_dataset(x)):
        return  # Other inputs (generators, PyDatasets) are checked when traced.
    check_same_ids(model, getattr(x, "preprocessor", None))
    x, y = _first_batch(x, y)
    check_structure(x, y)
    rows = model.backbone.vocabulary_size
    for name, ids in (
        ("encoder_token_ids", x["encoder_token_ids"]),
        ("decoder_token_ids", x["decoder_token_ids"]),
        ("targets", y),
    ):
        ids = np.asarray(keras.ops.convert_to_numpy(ids))
        if ids.size and (ids.max() >= rows or ids.min() < 0):
            raise ValueError(
                f"The batch's {name} hold ids in [{ids.min()}, {ids.max()}], "
                f"outside the model's vocabulary (0..{rows - 1}). Was the data "
                "tokenized with another vocabulary?"
            )


def check_same_ids(model, data_preprocessor):
    """The ids a dataset was made with (`pretraining_dataset` attaches its
    preprocessor) must be the model's.

    Args:
        model: the `SpacTorT5`.
        data_preprocessor: the dataset's `SpacTorT5Preprocessor`, or `None`
            (nothing to compare).
    """
    if data_preprocessor is None or not data_preprocessor.has_vocabulary:
        return
    keys = ("vocabulary_size", "num_sentinels", "eos_token_id", "pad_token_id")
    for key in keys:
        ours, theirs = getattr(model, key), getattr(data_preprocessor, key)
        if ours != theirs:
            raise ValueError(
                f"The dataset was made with {key}={theirs} but the model has "
                f"{key}={ours}: build the dataset from `model.preprocessor` "
                "(or the tokenizer the model was built with)."
            )
