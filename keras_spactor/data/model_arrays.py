"""Span-corruption examples as numpy arrays, for `fit` without `tf.data`."""

import numpy as np

PAD_ID = 0


def model_batch_arrays(inputs, targets):
    """Padded span-corruption rows -> keras-hub's `(x, y, sample_weight)`.

    The arrays `pretraining_dataset` batches, built with numpy alone (for
    batches stored once and read where TensorFlow is not installed).

    Args:
        inputs: int array `[n, inputs_length]`, encoder ids, 0-padded.
        targets: int array `[n, targets_length]`, span targets with EOS,
            0-padded.

    Returns:
        `x` (a dict of `encoder_token_ids`, `encoder_padding_mask`,
        `decoder_token_ids`, `decoder_padding_mask`), `y` (int32 targets)
        and `sample_weight` (float32, 1 where the target is not padding).

    Example:
    ```python
    x, y, w = model_batch_arrays(inputs, targets)
    model.fit(x, y, sample_weight=w, batch_size=32, shuffle=False)
    ```
    """
    inputs = np.asarray(inputs).astype("int32")
    targets = np.asarray(targets).astype("int32")
    x = {
        "encoder_token_ids": inputs,
        "encoder_padding_mask": inputs != PAD_ID,
        # T5's decoder starts with the pad id.
        "decoder_token_ids": np.pad(targets[:, :-1], [[0, 0], [1, 0]]),
        "decoder_padding_mask": targets != PAD_ID,
    }
    return x, targets, (targets != PAD_ID).astype("float32")
