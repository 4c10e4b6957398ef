"""The only place that reaches into keras-hub's private modules and state.

keras-hub 0.32 exports `T5Backbone` and `T5Seq2SeqLM`, but not the T5
layers they are built of, which SpacTor's generator reuses and its speed
patches (`layers/position_bias.py`, `layers/fused_attention.py`) find
and change. A keras-hub upgrade that moves them breaks this file alone, and
`tests/test_public_keras_api.py` keeps it that way.
"""

from keras_hub.src.models.t5.t5_layer_norm import T5LayerNorm
from keras_hub.src.models.t5.t5_multi_head_attention import T5MultiHeadAttention
from keras_hub.src.models.t5.t5_transformer_layer import T5TransformerLayer

__all__ = [
    "T5LayerNorm",
    "T5MultiHeadAttention",
    "T5TransformerLayer",
    "relative_position_bucket",
]


def relative_position_bucket(attention, relative_position):
    """T5's bucket of each relative position, as `attention` buckets it.

    keras-hub's `T5MultiHeadAttention.compute_bias` computes the buckets
    and gathers the bias table in one call; the bucketing alone is only its
    private static `_relative_position_bucket`.

    Args:
        attention: a `T5MultiHeadAttention` (its direction, bucket count and
            maximum distance are used).
        relative_position: int tensor, key position minus query position.

    Returns:
        An int tensor of the same shape, in `[0, buckets)`.
    """
    return attention._relative_position_bucket(
        relative_position,
        bidirectional=not attention.is_decoder,
        num_buckets=attention.relative_attention_buckets,
        max_distance=attention.relative_attention_max_distance,
    )
