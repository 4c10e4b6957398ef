"""T5's span-corruption lengths: pure Python, no TensorFlow.

The model's preprocessor derives its lengths from these, where TensorFlow
may not be installed; `span_corruption` (the `tf.data` ops) uses them too.
"""


def check_noise_args(noise_density, mean_noise_span_length):
    """Raise a `ValueError` for a density outside (0, 1) or spans below 1."""
    if not 0.0 < float(noise_density) < 1.0:
        raise ValueError(
            "`noise_density` must be in the open interval (0, 1). "
            f"Received: noise_density={noise_density}"
        )
    if float(mean_noise_span_length) < 1.0:
        raise ValueError(
            "`mean_noise_span_length` must be >= 1. "
            f"Received: mean_noise_span_length={mean_noise_span_length}"
        )


def span_corruption_lengths(
    inputs_length, noise_density=0.15, mean_noise_span_length=3.0
):
    """Raw chunk length and targets length for a given inputs length.

    Same arithmetic as seqio's `random_spans_helper`: the longest chunk of
    raw tokens whose corrupted inputs (non-noise tokens, one sentinel per
    noise span and EOS) still fit in `inputs_length`.

    Args:
        inputs_length: int. Length of the encoder inputs, EOS included.
        noise_density: float in (0, 1). Fraction of tokens that are noise.
        mean_noise_span_length: float >= 1. Mean length of a noise span.

    Returns:
        A tuple `(tokens_length, targets_length)`: the number of raw tokens
        to cut per chunk and the length of the resulting targets (EOS
        included).

    Example:
    >>> span_corruption_lengths(512)
    (568, 114)
    """
    check_noise_args(noise_density, mean_noise_span_length)
    if int(inputs_length) < 2:
        raise ValueError(
            f"`inputs_length` must be >= 2. Received: {inputs_length}"
        )

    def lengths(tokens_length):
        # Python's `round` rounds half to even, as seqio's does.
        num_noise = int(round(tokens_length * noise_density))
        num_nonnoise = tokens_length - num_noise
        num_spans = int(round(num_noise / mean_noise_span_length))
        return num_nonnoise + num_spans + 1, num_noise + num_spans + 1

    tokens_length = inputs_length - 1
    while lengths(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    _, targets_length = lengths(tokens_length)
    # seqio's hack: with density 0.5 make targets no longer than inputs.
    if noise_density == 0.5 and targets_length > inputs_length:
        tokens_length -= 1
        targets_length -= 1
    return tokens_length, targets_length


def max_noise_spans(
    inputs_length, noise_density=0.15, mean_noise_span_length=3.0
):
    """The number of noise spans in a full chunk: the sentinels it needs.

    Args:
        inputs_length: int. Length of the encoder inputs, EOS included.
        noise_density: float in (0, 1).
        mean_noise_span_length: float >= 1.

    Returns:
        An int: one sentinel per noise span in `inputs`, and as many in
        `targets`.

    Example:
    >>> max_noise_spans(512)
    28
    """
    tokens_length, _ = span_corruption_lengths(
        inputs_length, noise_density, mean_noise_span_length
    )
    num_noise = round(tokens_length * noise_density)
    return int(round(num_noise / mean_noise_span_length))
