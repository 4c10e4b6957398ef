"""Backend-neutral helpers for choosing and replacing generator inputs."""

from typing import NamedTuple

import keras
from keras import ops


def ordinary_token_ids(
    num_rows, first_sentinel_id, eos_token_id, pad_token_id, mask_token_id
):
    """Bool `[num_rows]`: the ids a generator may predict and sample.

    Ordinary pieces only: not a sentinel (`>= first_sentinel_id`), not an
    unused embedding row above the vocabulary, not EOS, padding or the mask
    id. A sampled sentinel would duplicate one already in the encoder input
    and break span corruption's input/target alignment.

    Args:
        num_rows: int. Rows of the token embedding (width of the logits).
        first_sentinel_id: int. Smallest sentinel id (`vocab - sentinels`).
        eos_token_id: int.
        pad_token_id: int.
        mask_token_id: int.

    Returns:
        A bool tensor `[num_rows]`.
    """
    ids = ops.arange(num_rows, dtype="int32")
    special = ops.logical_or(
        ops.logical_or(ids == eos_token_id, ids == pad_token_id),
        ids == mask_token_id,
    )
    return ops.logical_and(ids < first_sentinel_id, ops.logical_not(special))


def replaceable_positions(token_ids, padding_mask, ordinary):
    """Positions that may be masked and are scored by RTD.

    Non-padding positions that hold an ordinary piece (see
    `ordinary_token_ids`): not a sentinel, EOS, padding or the mask id.

    Args:
        token_ids: int tensor `[batch, length]`, span-corrupted encoder input.
        padding_mask: bool/int tensor `[batch, length]`.
        ordinary: bool tensor `[num_rows]` from `ordinary_token_ids`.

    Returns:
        A bool tensor `[batch, length]`.
    """
    return ops.logical_and(
        ops.cast(padding_mask, "bool"), ops.take(ordinary, token_ids, axis=0)
    )


# Not keras-hub's `MaskedLMMaskGenerator`: that masks in the input pipeline
# (tf.ragged); SpacTor masks inside the train step, on every backend.
def select_masked_positions(eligible, mlm_probability, num_predictions, seed):
    """Pick `round(mlm_probability * eligible)` positions per example.

    Positions are returned gathered to a fixed count (ELECTRA's
    `max_predictions_per_seq`) so that the generator head runs on
    `[batch, num_predictions]` tokens, not on every position.

    Args:
        eligible: bool tensor `[batch, length]` of maskable positions.
        mlm_probability: float. Fraction of eligible positions to mask.
        num_predictions: int. Static number of slots per example.
        seed: a `keras.random.SeedGenerator` or seed.

    Returns:
        `(positions, weights)`: int32 `[batch, num_predictions]` indices
        (distinct within an example) and float32 weights that are 1 for the
        slots in use and 0 for unused slots.
    """
    scores = keras.random.uniform(ops.shape(eligible), seed=seed)
    scores = ops.where(eligible, scores, -1.0)
    top_scores, positions = ops.top_k(scores, k=num_predictions)
    count = ops.sum(ops.cast(eligible, "float32"), axis=-1, keepdims=True)
    wanted = ops.maximum(ops.round(count * mlm_probability), 1.0)
    slot = ops.cast(ops.arange(num_predictions), "float32")[None, :]
    in_use = ops.logical_and(slot < wanted, top_scores >= 0.0)
    return ops.cast(positions, "int32"), ops.cast(in_use, "float32")


def sample_by_inverse_cdf(logits, seed, block_size=128):
    """One draw from `softmax(logits)` along the last axis, per row.

    By the inverse CDF, in two levels: first a block of `block_size`
    consecutive pieces, with probability its share of the mass, then a
    piece within that block. Each level compares one uniform number with
    cumulative probabilities. Against `keras.random.categorical`, which
    draws a Gumbel number per vocabulary row, this draws two numbers per
    row; against one cumulative sum over the whole vocabulary, it reads
    the probabilities once to sum the blocks, then takes cumulative sums
    over the blocks and within one block only (a cumulative sum over 32k
    pieces took a CPU longer than the softmax before it). A piece of
    probability 0 is never drawn, also where rounding leaves cumulative
    sums not quite monotone.

    Args:
        logits: float tensor `[..., rows]`.
        seed: a `keras.random.SeedGenerator` or seed.
        block_size: int. Pieces per block of the first level; the last
            block is padded with pieces of probability 0.

    Returns:
        int32 tensor `logits.shape[:-1]` of drawn indices.
    """
    probabilities = ops.softmax(ops.cast(logits, "float32"), axis=-1)
    leading, rows = tuple(ops.shape(logits)[:-1]), ops.shape(logits)[-1]
    blocks = -(-rows // block_size)
    if blocks * block_size > rows:
        padding = [(0, 0)] * len(leading) + [(0, blocks * block_size - rows)]
        probabilities = ops.pad(probabilities, padding)
    probabilities = ops.reshape(probabilities, leading + (blocks, block_size))
    uniforms = keras.random.uniform(leading + (2,), seed=seed)
    block = _first_drawable(ops.sum(probabilities, axis=-1), uniforms[..., 0])
    in_block = ops.take_along_axis(
        probabilities, block[..., None, None], axis=-2
    )
    piece = _first_drawable(in_block[..., 0, :], uniforms[..., 1])
    return block * block_size + piece


def _first_drawable(probabilities, uniform):
    """The first index whose cumulative probability exceeds `uniform`
    times the total, among those of probability > 0: a draw from the
    (unnormalised) `probabilities` along the last axis."""
    cumulative = ops.cumsum(probabilities, axis=-1)
    threshold = uniform[..., None] * cumulative[..., -1:]
    drawable = ops.logical_and(cumulative > threshold, probabilities > 0)
    return ops.cast(ops.argmax(ops.cast(drawable, "int32"), axis=-1), "int32")


def replace_tokens(token_ids, positions, weights, new_tokens):
    """Write `new_tokens` at `positions` where `weights` is 1.

    Args:
        token_ids: int tensor `[batch, length]`.
        positions: int tensor `[batch, slots]`, distinct per example.
        weights: float tensor `[batch, slots]`, 1 for slots in use.
        new_tokens: int tensor `[batch, slots]` (or a scalar).

    Returns:
        `(new_token_ids, is_written)` with `is_written` a bool `[batch,
        length]` tensor.
    """
    length = ops.shape(token_ids)[1]
    # [batch, slots, length]; cheap because slots ~ 0.15 * length.
    hits = ops.one_hot(positions, length, dtype="int32")
    hits = hits * ops.cast(weights, "int32")[:, :, None]
    is_written = ops.sum(hits, axis=1) > 0
    new_tokens = ops.broadcast_to(
        ops.cast(new_tokens, "int32"), ops.shape(positions)
    )
    scattered = ops.sum(hits * new_tokens[:, :, None], axis=1)
    return ops.where(is_written, scattered, token_ids), is_written


class MaskedInputs(NamedTuple):
    """The generator's input and where it was masked.

    Args:
        token_ids: int32 `[batch, length]`, `mask_token_id` at the masked
            positions shown as masks.
        eligible: bool `[batch, length]`, the positions that could be
            masked (`replaceable_positions`).
        positions: int32 `[batch, slots]`, the masked positions.
        weights: float32 `[batch, slots]`, 1 for the slots in use.
    """

    token_ids: object
    eligible: object
    positions: object
    weights: object
