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

Rows of an untied output embedding past the tokenizer's pieces (T5 pads
32,100 pieces to 32,128 rows) start at zero when `vocabulary_size` is given:
their logits start at 0 while the largest of the real ones is well above,
so greedy decoding of a barely trained model never picks an id the
tokenizer cannot decode (keras-hub's `generate` fails on one), and training
only pushes them further down, as they are never targets.

The rest of keras-hub's T5 initialisers are already fan-in scaled (normal
with std `inner_dim**-0.5` for attention projections, `hidden_dim**-0.5`
and `intermediate_dim**-0.5` for the feed-forward), so only the embeddings
are re-drawn here.
"""

import keras


def initialize_embeddings_like_t5x(backbone, seed=None, vocabulary_size=None):
    """Re-draw a `T5Backbone`'s token embeddings the way T5X does.

    Call it on a freshly built (randomly initialised) backbone only; it
    overwrites the embeddings.

    Args:
        backbone: a `keras_hub.models.T5Backbone`.
        seed: optional int, for the draws (default: Keras's global seed,
            which `keras.utils.set_random_seed` sets).
        vocabulary_size: optional int, the tokenizer's pieces. Rows from
            there on of an untied output embedding start at zero.

    Returns:
        The backbone.

    Example:
    ```python
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=2048, num_layers=2, num_heads=4, hidden_dim=64,
        intermediate_dim=128, dropout=0.0, tie_embedding_weights=False,
    )
    initialize_embeddings_like_t5x(backbone, vocabulary_size=2000)
    ```
    """
    embedding = backbone.token_embedding
    seeds = keras.random.SeedGenerator(seed) if seed is not None else None
    _redraw(embedding.embeddings, 1.0, seeds)
    if not backbone.tie_embedding_weights:
        _redraw(embedding.reverse_embeddings, backbone.hidden_dim**-0.5, seeds)
        if vocabulary_size is not None:
            _zero_spare_columns(embedding.reverse_embeddings, vocabulary_size)
    return backbone


def _zero_spare_columns(reverse_embeddings, vocabulary_size):
    # `reverse_embeddings` is (hidden_dim, rows): one column per token.
    rows = reverse_embeddings.shape[-1]
    keep = keras.ops.arange(rows) < vocabulary_size
    current = keras.ops.convert_to_tensor(reverse_embeddings)
    values = keras.ops.where(keep[None, :], current, 0.0)
    reverse_embeddings.assign(keras.ops.cast(values, reverse_embeddings.dtype))


def _redraw(variable, stddev, seeds):
    values = keras.random.normal(
        variable.shape, stddev=stddev, dtype=variable.dtype, seed=seeds
    )
    variable.assign(values)


def reinitialize_decoder(backbone, vocabulary_size=None):
    """Give a pre-trained `T5Backbone` a freshly initialised decoder.

    The encoder (its layers, relative position bias and final norm) and the
    shared input embedding keep their pre-trained values; the decoder's
    layers (with their relative position bias and cross-attention), its
    final norm and the untied output embedding are drawn again as a
    from-scratch model draws them (keras-hub's initialisers, embeddings as
    T5X does). Fine-tuning then trains a new decoder on the pre-trained
    encoder, as EncT5 (Liu et al., 2021, arXiv 2110.08426) fine-tunes T5's
    encoder under a small fresh decoder for classification.

    Args:
        backbone: a `keras_hub.models.T5Backbone` with untied embeddings
            (T5 v1.1): a tied output head *is* the input embedding, which
            stays pre-trained.
        vocabulary_size: optional int, the tokenizer's pieces (rows of the
            output embedding past them start at zero).

    The draws follow Keras's global seed: call `keras.utils.set_random_seed`
    before loading the model (on TensorFlow, seeding after a tokenizer is
    made deletes its SentencePiece resource).

    Returns:
        The backbone.

    Example:
    ```python
    keras.utils.set_random_seed(0)
    lm = keras_hub.models.T5Seq2SeqLM.from_preset("runs/demo/preset")
    reinitialize_decoder(lm.backbone)
    ```
    """
    if backbone.tie_embedding_weights:
        raise ValueError(
            "reinitialize_decoder needs untied embeddings (T5 v1.1): with "
            "tie_embedding_weights=True the decoder's output head is the "
            "encoder's input embedding."
        )
    fresh = type(backbone).from_config(backbone.get_config())
    initialize_embeddings_like_t5x(fresh, vocabulary_size=vocabulary_size)
    pairs = [
        (mine, new)
        for layer, new_layer in zip(
            backbone.decoder_transformer_layers + [backbone.decoder_layer_norm],
            fresh.decoder_transformer_layers + [fresh.decoder_layer_norm],
        )
        for mine, new in zip(layer.weights, new_layer.weights)
    ]
    pairs.append(
        (
            backbone.token_embedding.reverse_embeddings,
            fresh.token_embedding.reverse_embeddings,
        )
    )
    for mine, new in pairs:
        mine.assign(new)
    return backbone
