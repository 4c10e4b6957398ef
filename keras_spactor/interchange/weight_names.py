"""Which `T5Backbone` variable is which transformers T5 weight.

keras-hub's `T5Backbone` and transformers' `T5ForConditionalGeneration`
hold the same arrays: a `Dense` kernel is `(in, out)` where a torch
`Linear` weight is `(out, in)`, so kernels are transposed; embeddings,
relative position biases `(buckets, heads)` and layer norms are not.
Only the first layer of each stack has a relative position bias, in both.
"""


def _attention(prefix, attention):
    return [
        (f"{prefix}.q.weight", attention.query_projector.kernel, True),
        (f"{prefix}.k.weight", attention.key_projector.kernel, True),
        (f"{prefix}.v.weight", attention.value_projector.kernel, True),
        (f"{prefix}.o.weight", attention.output_projector.kernel, True),
    ]


def _feed_forward(prefix, layer):
    if layer.use_gated_activation:
        # transformers: act(wi_0(x)) * wi_1(x); keras-hub: the activated
        # `input_projector` times the linear `gate_projector`.
        names = [
            (f"{prefix}.wi_0.weight", layer.input_projector.kernel, True),
            (f"{prefix}.wi_1.weight", layer.gate_projector.kernel, True),
        ]
    else:
        names = [(f"{prefix}.wi.weight", layer.input_projector.kernel, True)]
    names.append((f"{prefix}.wo.weight", layer.output_projector.kernel, True))
    return names


def _block(stack, index, layer, is_decoder):
    prefix = f"{stack}.block.{index}.layer"
    names = _attention(f"{prefix}.0.SelfAttention", layer.self_attention)
    names.append(
        (
            f"{prefix}.0.layer_norm.weight",
            layer.self_attention_layer_norm.weight,
            False,
        )
    )
    if layer.self_attention.use_relative_attention_bias:
        names.append(
            (
                f"{prefix}.0.SelfAttention.relative_attention_bias.weight",
                layer.self_attention.relative_attention_bias,
                False,
            )
        )
    feed_forward = 1
    if is_decoder:
        names += _attention(
            f"{prefix}.1.EncDecAttention", layer.cross_attention
        )
        names.append(
            (
                f"{prefix}.1.layer_norm.weight",
                layer.cross_attention_layer_norm.weight,
                False,
            )
        )
        feed_forward = 2
    names += _feed_forward(f"{prefix}.{feed_forward}.DenseReluDense", layer)
    names.append(
        (
            f"{prefix}.{feed_forward}.layer_norm.weight",
            layer.layer_norm.weight,
            False,
        )
    )
    return names


def weight_names(backbone):
    """`(transformers name, Keras variable, transposed)` for every weight
    of a `keras_hub.models.T5Backbone`.

    The shared input embedding is `shared.weight`; an untied backbone's
    output embedding (`reverse_embeddings`, `(hidden, rows)`) is
    `lm_head.weight`, transposed. A tied backbone has no `lm_head.weight`.

    Args:
        backbone: a built `keras_hub.models.T5Backbone`.

    Returns:
        A list of 3-tuples, one per backbone variable.
    """
    embedding = backbone.token_embedding
    names = [("shared.weight", embedding.embeddings, False)]
    if not backbone.tie_embedding_weights:
        names.append(("lm_head.weight", embedding.reverse_embeddings, True))
    for i, layer in enumerate(backbone.encoder_transformer_layers):
        names += _block("encoder", i, layer, is_decoder=False)
    names.append(
        (
            "encoder.final_layer_norm.weight",
            backbone.encoder_layer_norm.weight,
            False,
        )
    )
    for i, layer in enumerate(backbone.decoder_transformer_layers):
        names += _block("decoder", i, layer, is_decoder=True)
    names.append(
        (
            "decoder.final_layer_norm.weight",
            backbone.decoder_layer_norm.weight,
            False,
        )
    )
    return names
