"""Span-corruption examples as numpy arrays, for `fit` without `tf.data`."""

from keras_spactor.data.vocabulary import PAD_ID
from keras_spactor.models.spactor_t5_preprocessor import as_preprocessor
from keras_spactor.models.spactor_t5_preprocessor import model_batch


def model_batch_arrays(inputs, targets, preprocessor=None):
    """Padded span-corruption rows -> keras-hub's `(x, y, sample_weight)`.

    The arrays `pretraining_dataset` batches (the preprocessor's
    `model_batch`), built with numpy alone (for batches stored once and
    read where TensorFlow is not installed).

    Args:
        inputs: int array `[n, inputs_length]`, encoder ids, pad-padded.
        targets: int array `[n, targets_length]`, span targets with EOS,
            pad-padded.
        preprocessor: optional `SpacTorT5Preprocessor` or
            `keras_hub.models.T5Tokenizer` whose pad id is used; T5's (0)
            without one.

    Returns:
        `x` (a dict of `encoder_token_ids`, `encoder_padding_mask`,
        `decoder_token_ids`, `decoder_padding_mask`), `y` (int32 targets)
        and `sample_weight` (float32, 1 where the target is not padding).

    Example:
    ```python
    x, y, w = model_batch_arrays(inputs, targets, model.preprocessor)
    model.fit(x, y, sample_weight=w, batch_size=32, shuffle=False)
    ```
    """
    if preprocessor is None:
        return model_batch(inputs, targets, PAD_ID)
    return as_preprocessor(preprocessor).model_batch(inputs, targets)
