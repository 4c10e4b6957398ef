"""Held-out measures of a pre-trained `SpacTorT5`: its span-corruption loss,
how much of it the encoder explains, and how alike the encoder's outputs
are."""

import numpy as np
from keras import ops


def validation_metrics(model, dataset, steps=None):
    """SC loss on held-out batches, the encoder's use and its token cosine.

    `validation_sc_loss` is the span-corruption loss (the mean over batches
    of each batch's weighted mean token cross-entropy, as
    `model.evaluate` reports `sc_loss`), computed without touching the
    model's metric trackers, so it may be called in the middle of `fit`.

    `encoder_use` is the same loss with every example's encoder inputs
    swapped for the previous example's (across the whole held-out set),
    minus the real loss: 0 when the decoder predicts the spans from its own
    prefix alone (a language model of the targets that ignores the
    encoder), growing as the decoder reads the context around each
    sentinel.

    `encoder_token_cosine` is the mean cosine, over the first batch's
    non-padding tokens, between each token's encoder output and the mean
    output: near 0 when tokens keep their identity, near 1 when the encoder
    maps everything to one direction (a collapsed encoder that fine-tuning
    must first undo).

    Args:
        model: a `keras_spactor.SpacTorT5`.
        dataset: finite batches `(x, y, sample_weight)` as
            `keras_spactor.data.pretraining_dataset` yields them (pass
            `repeat=False`, or `steps`): a `tf.data.Dataset` or any
            iterable of numpy batches (e.g. from
            `keras_spactor.data.model_batch_arrays`).
        steps: int or `None`. Read at most this many batches.

    Returns:
        A dict of floats: `validation_sc_loss`, `encoder_use` and
        `encoder_token_cosine`.

    Example:
    ```python
    held_out = keras_spactor.data.pretraining_dataset(
        "builtin:python-docs", tokenizer, batch_size=8, inputs_length=128,
        split="validation", shuffle_buffer=None, repeat=False,
    )
    keras_spactor.evaluation.validation_metrics(model, held_out, steps=4)
    ```
    """
    batches = _numpy_batches(dataset, steps)
    if not batches:
        raise ValueError("validation_metrics: `dataset` yielded no batch.")
    batch_size = len(batches[0][1])
    x, y, weights = (_concatenate([b[i] for b in batches]) for i in range(3))
    loss = _sc_loss(model, x, y, weights, batch_size)
    # Each example's targets with the previous example's encoder inputs.
    swapped = dict(x)
    for key in ("encoder_token_ids", "encoder_padding_mask"):
        swapped[key] = np.roll(x[key], 1, axis=0)
    swapped_loss = _sc_loss(model, swapped, y, weights, batch_size)
    return {
        "validation_sc_loss": loss,
        "encoder_use": swapped_loss - loss,
        "encoder_token_cosine": _encoder_token_cosine(model, batches[0][0]),
    }


def _numpy_batches(dataset, steps):
    if hasattr(dataset, "as_numpy_iterator"):
        dataset = dataset.as_numpy_iterator()
    batches = []
    for batch in dataset:
        if steps is not None and len(batches) >= steps:
            break
        x, y, *weights = batch
        x = {key: ops.convert_to_numpy(value) for key, value in x.items()}
        y = ops.convert_to_numpy(y)
        # Without weights, every target but T5's padding (id 0) counts.
        weights = y != 0 if not weights else weights[0]
        batches.append((x, y, ops.convert_to_numpy(weights)))
    return batches


def _concatenate(parts):
    if isinstance(parts[0], dict):
        return {
            key: np.concatenate([p[key] for p in parts]) for key in parts[0]
        }
    return np.concatenate(parts)


def _sc_loss(model, x, y, weights, batch_size):
    """The mean over batches of the span-corruption loss (eager: no
    compiled function and no metric tracker of the model is touched)."""
    losses = []
    for start in range(0, len(y), batch_size):
        rows = slice(start, start + batch_size)
        _, outputs = model.compute_losses(
            {key: value[rows] for key, value in x.items()},
            y[rows],
            weights[rows],
            hybrid=False,
            training=False,
        )
        losses.append(float(ops.convert_to_numpy(outputs["sc_loss"])))
    return float(np.mean(losses))


def _encoder_token_cosine(model, x):
    outputs = model.backbone(
        {key: ops.convert_to_tensor(value) for key, value in x.items()}
    )
    hidden = ops.convert_to_numpy(
        ops.cast(outputs["encoder_sequence_output"], "float32")
    )
    tokens = hidden[x["encoder_padding_mask"].astype(bool)].astype("float64")
    mean = tokens.mean(axis=0)
    norms = np.linalg.norm(tokens, axis=1) * np.linalg.norm(mean)
    return float(np.mean(tokens @ mean / (norms + 1e-12)))
