"""T5 span corruption, written as stateless, graph-compatible TF ops.

The arithmetic and the random segmentation follow T5/seqio exactly (see
`random_spans_helper`, `random_spans_noise_mask` and `denoise` in seqio), so
that a model pre-trained here sees the same distribution of examples as T5.
"""

import tensorflow as tf

from keras_spactor.data.span_lengths import check_noise_args
from keras_spactor.data.span_lengths import span_corruption_lengths  # noqa: F401


def _stateless_shuffle(values, seed):
    order = tf.argsort(tf.random.stateless_uniform(tf.shape(values), seed))
    return tf.gather(values, order)


def _random_segmentation(num_items, num_segments, seed):
    """Lengths of `num_segments` non-empty random segments of `num_items`."""
    # A 1 marks the first item of a segment (the first item always is one).
    first_in_segment = tf.pad(
        _stateless_shuffle(
            tf.cast(tf.range(num_items - 1) < num_segments - 1, tf.int32),
            seed,
        ),
        [[1, 0]],
    )
    segment_id = tf.cumsum(first_in_segment)
    return tf.math.segment_sum(tf.ones_like(segment_id), segment_id)


def random_spans_noise_mask(
    length, noise_density=0.15, mean_noise_span_length=3.0, seed=(0, 0)
):
    """T5's noise mask: random noise spans of a given mean length.

    `num_noise = clip(round(length * noise_density), 1, length - 1)` and
    `num_spans = max(round(num_noise / mean_noise_span_length), 1)`. Noise
    and non-noise tokens are each split into `num_spans` non-empty segments
    at random, then interleaved non-noise, noise, non-noise, ... so the mask
    always starts with non-noise and ends with noise (seqio's default,
    `random_roll=False`). Rounding is half to even, like `tf.round`.

    Where T5's code would fail (more spans than non-noise tokens, only
    possible with a high `noise_density`), the number of spans is capped.

    Args:
        length: int or scalar int tensor (may be dynamic). Number of tokens.
        noise_density: float in (0, 1).
        mean_noise_span_length: float >= 1.
        seed: int tensor of shape `[2]`, the stateless seed.

    Returns:
        A bool tensor of shape `[length]`, `True` at noise positions.

    Example:
    >>> mask = random_spans_noise_mask(20, seed=(1, 2))
    >>> int(tf.reduce_sum(tf.cast(mask, "int32")))
    3
    """
    check_noise_args(noise_density, mean_noise_span_length)
    orig_length = tf.convert_to_tensor(length, tf.int32)
    # Lengths below 2 are degenerate; compute for 2 and cut back.
    length = tf.maximum(orig_length, 2)
    num_noise = tf.cast(
        tf.round(tf.cast(length, tf.float32) * noise_density), tf.int32
    )
    num_noise = tf.clip_by_value(num_noise, 1, length - 1)
    num_spans = tf.cast(
        tf.round(tf.cast(num_noise, tf.float32) / mean_noise_span_length),
        tf.int32,
    )
    num_nonnoise = length - num_noise
    num_spans = tf.maximum(tf.minimum(num_spans, num_nonnoise), 1)

    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    noise_lengths = _random_segmentation(num_noise, num_spans, seeds[0])
    nonnoise_lengths = _random_segmentation(num_nonnoise, num_spans, seeds[1])
    interleaved = tf.reshape(
        tf.stack([nonnoise_lengths, noise_lengths], axis=1), [num_spans * 2]
    )
    span_starts = tf.cumsum(interleaved)[:-1]
    span_start_indicator = tf.math.unsorted_segment_sum(
        tf.ones_like(span_starts), span_starts, length
    )
    is_noise = tf.equal(tf.cumsum(span_start_indicator) % 2, 1)
    return is_noise[:orig_length]


def _spans_to_sentinels(tokens, noise_mask, first_sentinel_id):
    """Replaces each masked span by one sentinel, counting down."""
    previous = tf.pad(noise_mask[:-1], [[1, 0]])
    first = tf.logical_and(noise_mask, tf.logical_not(previous))
    subsequent = tf.logical_and(noise_mask, previous)
    sentinels = first_sentinel_id + 1 - tf.cumsum(tf.cast(first, tokens.dtype))
    tokens = tf.where(first, sentinels, tokens)
    return tf.boolean_mask(tokens, tf.logical_not(subsequent))


def span_corruption(
    tokens,
    vocabulary_size,
    noise_density=0.15,
    mean_noise_span_length=3.0,
    seed=(0, 0),
    eos_id=1,
):
    """Corrupts one chunk of token ids into T5 `inputs` and `targets`.

    Each noise span becomes one sentinel in `inputs`, each non-noise span
    one sentinel in `targets`; sentinels count down from
    `vocabulary_size - 1` (`<extra_id_0>`, then `<extra_id_1>`, ...). EOS is
    appended to both. Works eagerly and inside `tf.data.Dataset.map`.

    Args:
        tokens: 1D int tensor of raw token ids, without EOS.
        vocabulary_size: int. The TOKENIZER's vocabulary size (T5: 32100),
            not the model's padded embedding size.
        noise_density: float in (0, 1).
        mean_noise_span_length: float >= 1.
        seed: int tensor of shape `[2]`, the stateless seed.
        eos_id: int. Id appended to `inputs` and `targets`.

    Returns:
        A dict with 1D int tensors `"inputs"` and `"targets"` (dtype of
        `tokens`).

    Example:
    >>> out = span_corruption(tf.range(3, 23), vocabulary_size=100)
    >>> sorted(out)
    ['inputs', 'targets']
    """
    tokens = tf.convert_to_tensor(tokens)
    noise_mask = random_spans_noise_mask(
        tf.size(tokens), noise_density, mean_noise_span_length, seed
    )
    first_sentinel = tf.constant(vocabulary_size - 1, tokens.dtype)
    eos = tf.constant([eos_id], tokens.dtype)
    inputs = _spans_to_sentinels(tokens, noise_mask, first_sentinel)
    targets = _spans_to_sentinels(
        tokens, tf.logical_not(noise_mask), first_sentinel
    )
    return {
        "inputs": tf.concat([inputs, eos], axis=0),
        "targets": tf.concat([targets, eos], axis=0),
    }
