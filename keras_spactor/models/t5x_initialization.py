"""T5X's initialisation of a T5's token embeddings, for from-scratch models.

keras-hub's `T5Backbone` (0.32 and earlier) builds its token embedding with
`keras.initializers.TruncatedNormal(1.0)`, whose first argument is the
*mean*: every row starts at 1.0 +- 0.05, all tokens look almost the same,
and a model trained from there barely sees its input (its first loss is
still ln V, because every logit is equal). Loaded checkpoints are not
affected. Mesh TensorFlow and T5X initialise the input embedding N(0, 1) and
an untied output embedding with fan-in scaling (std `hidden_dim**-0.5`);
the tied head of T5 scales its input by `hidden_dim**-0.5` instead, which
keras-hub's `T5Seq2SeqLM` already does.

The rest of keras-hub's T5 initialisers are already fan-in scaled (normal
with std `inner_dim**-0.5` for attention projections, `hidden_dim**-0.5`
and `intermediate_dim**-0.5` for the feed-forward), so only the embeddings
are re-drawn here.
"""

import keras


def initialize_embeddings_like_t5x(backbone, seed=None):
    """Re-draw a `T5Backbone`'s token embeddings the way T5X does.

    Call it on a freshly built (randomly initialised) backbone only; it
    overwrites the embeddings.

    Args:
        backbone: a `keras_hub.models.T5Backbone`.
        seed: optional int, for the draws (default: Keras's global seed,
            which `keras.utils.set_random_seed` sets).

    Returns:
        The backbone.

    Example:
    ```python
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=2048, num_layers=2, num_heads=4, hidden_dim=64,
        intermediate_dim=128, dropout=0.0, tie_embedding_weights=False,
    )
    initialize_embeddings_like_t5x(backbone)
    ```
    """
    embedding = backbone.token_embedding
    seeds = keras.random.SeedGenerator(seed) if seed is not None else None
    _redraw(embedding.embeddings, 1.0, seeds)
    if not backbone.tie_embedding_weights:
        _redraw(embedding.reverse_embeddings, backbone.hidden_dim**-0.5, seeds)
    return backbone


def _redraw(variable, stddev, seeds):
    values = keras.random.normal(
        variable.shape, stddev=stddev, dtype=variable.dtype, seed=seeds
    )
    variable.assign(values)
