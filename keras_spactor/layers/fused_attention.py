"""T5 attention through `keras.ops.dot_product_attention`."""

import types

from keras import ops

from keras_spactor import _keras_compat
from keras_spactor._keras_hub_compat import T5TransformerLayer


def use_fused_attention(model, flash_attention=None):
    """Run every T5 layer's attention in `model` as one fused call.

    keras-hub's `T5TransformerLayer` computes attention as separate passes
    over the `(batch, heads, query, key)` scores (a product, the bias add,
    a softmax, a product), and the first layer of each stack folds the
    padding and causal masks into a batched position bias that the later
    layers inherit. This replaces, on the given layer instances only,
    their `call` with one that hands each attention to
    `keras.ops.dot_product_attention` (cuDNN's or XLA's fused attention
    where the device has one): the relative position bias goes in as an
    additive bias WITHOUT a batch axis, `(1, heads, query, key)`, the
    padding mask as a boolean mask, the causal mask as `is_causal` (a
    boolean mask in cached decoding), and `scale=1.0` (T5's scores are
    not divided by the square root of the head size). Each layer builds
    its own masks from the `attention_mask` and `use_causal_mask` it is
    called with, as keras-hub's stacks and `SpacTorGenerator` pass them
    to every layer.

    On a CPU the outputs and gradients equal keras-hub's within float32
    round-off (masked positions get exactly zero weight either way).
    Weights, presets and saved files are unchanged: nothing but the
    instances' `call` is replaced. It composes with
    `use_one_hot_position_bias` (the bias comes from each attention's
    `compute_bias`, whichever it is), works for `T5Seq2SeqLM.generate`
    (the cached decoder builds a rectangular causal mask from the cache
    index, as keras-hub does), and falls back to keras-hub's unfused
    arithmetic where attention dropout is active (training with a
    non-zero `dropout`: the fused call has no dropout on its weights).

    OFF by default everywhere: it has not yet been timed on a GPU.

    Args:
        model: a Keras layer or model holding `T5TransformerLayer`s (a
            `keras_hub.models.T5Backbone`, a `T5Seq2SeqLM`, a `SpacTorT5`
            with its generator).
        flash_attention: passed to `keras.ops.dot_product_attention`:
            `None` lets the backend decide (JAX tries cuDNN on a GPU and
            uses XLA otherwise; TensorFlow has no flash attention).

    Returns:
        The number of transformer layers changed.

    Example:
    ```python
    model = keras_spactor.SpacTorT5.from_preset("spactor_t5_tiny")
    keras_spactor.layers.use_fused_attention(model)
    ```
    """
    changed = 0
    for layer in _keras_compat.all_sublayers(model):
        if isinstance(layer, T5TransformerLayer):
            layer.call = types.MethodType(_fused_layer_call, layer)
            layer.fused_attention_flash = flash_attention
            changed += 1
    return changed


def _fused_layer_call(
    layer,
    hidden_states,
    attention_mask=None,
    position_bias=None,
    encoder_hidden_states=None,
    encoder_attention_mask=None,
    use_causal_mask=False,
    self_attention_cache=None,
    self_attention_cache_update_index=None,
    cross_attention_cache=None,
    cross_attention_cache_update_index=None,
    training=False,
):
    """`T5TransformerLayer.call`, with the attention of `_attend`."""
    residual = hidden_states
    x = layer.self_attention_layer_norm(hidden_states)
    x, position_bias, self_attention_cache = _attend(
        layer.self_attention,
        x,
        key_mask=attention_mask,
        causal=use_causal_mask,
        position_bias=position_bias,
        cache=self_attention_cache,
        cache_update_index=self_attention_cache_update_index,
        training=training,
        flash_attention=layer.fused_attention_flash,
    )
    x = layer.self_attention_dropout(x, training=training)
    x = x + residual

    if layer.is_decoder:
        residual = x
        x = layer.cross_attention_layer_norm(x)
        x, _, cross_attention_cache = _attend(
            layer.cross_attention,
            x,
            key_value_states=encoder_hidden_states,
            key_mask=encoder_attention_mask,
            cache=cross_attention_cache,
            cache_update_index=cross_attention_cache_update_index,
            training=training,
            flash_attention=layer.fused_attention_flash,
        )
        x = layer.cross_attention_dropout(x, training=training)
        x = x + residual

    x = _feed_forward(layer, x, training) + x

    # As keras-hub's: a functional model's outputs cannot hold `None`.
    if self_attention_cache is not None:
        return x, position_bias, self_attention_cache, cross_attention_cache
    return x, position_bias


def _feed_forward(layer, x, training):
    """The layer's feed-forward block, its residual aside."""
    x = layer.layer_norm(x)
    if layer.use_gated_activation:
        x = layer.input_projector(x) * layer.gate_projector(x)
    else:
        x = layer.input_projector(x)
    x = layer.dropout_layer(x, training=training)
    x = layer.output_projector(x)
    return layer.dropout_layer(x, training=training)


def _attend(
    attention,
    hidden_states,
    key_value_states=None,
    key_mask=None,
    causal=False,
    position_bias=None,
    cache=None,
    cache_update_index=None,
    training=False,
    flash_attention=None,
):
    """What `T5MultiHeadAttention.call` computes, with the masks apart.

    Args:
        attention: the `T5MultiHeadAttention` whose projections and
            position bias table are used.
        key_mask: `(batch, 1, keys)`, 1 where a key may be attended to.
        causal: bool. Mask keys after each query (self-attention).
        position_bias: `(1, heads, queries, keys)` from the stack's first
            layer, or `None` to compute it here.

    Returns:
        `(output, position_bias, cache)` like keras-hub's, the bias
        unbatched and unmasked.
    """
    batch_size, query_length = ops.shape(hidden_states)[:2]

    def split_heads(states):
        shape = (batch_size, -1, attention.num_heads, attention.key_value_dim)
        return ops.reshape(states, shape)

    query = split_heads(attention.query_projector(hidden_states))
    inputs = hidden_states if key_value_states is None else key_value_states
    key, value, cache = _keys_and_values(
        attention, inputs, split_heads, cache, cache_update_index
    )
    key_length = ops.shape(key)[1]
    query_start = 0 if cache_update_index is None else cache_update_index
    if position_bias is None:
        position_bias = _position_bias(
            attention, query_length, key_length, query_start
        )
    mask, is_causal = _masks(
        key_mask, causal, cache, query_length, key_length, query_start
    )

    if training and attention.dropout_layer.rate > 0:
        # The fused call has no dropout on the attention weights.
        if is_causal:
            mask = _and(mask, _causal_mask(query_length, key_length, 0))
        output = _unfused_with_dropout(
            attention, query, key, value, position_bias, mask
        )
    else:
        output = ops.dot_product_attention(
            query,
            key,
            value,
            bias=ops.cast(position_bias, query.dtype),
            mask=mask,
            scale=1.0,
            is_causal=is_causal,
            flash_attention=flash_attention,
        )
    output = ops.reshape(output, (batch_size, -1, attention.inner_dim))
    return attention.output_projector(output), position_bias, cache


def _keys_and_values(attention, inputs, split_heads, cache, update_index):
    """Keys and values `(batch, keys, heads, head size)` of `inputs`, or
    of the cache (a static one holds the encoder's; a growing one gets
    this step's written at `update_index`), and the updated cache."""
    if cache is None:
        key = split_heads(attention.key_projector(inputs))
        value = split_heads(attention.value_projector(inputs))
        return key, value, cache
    if update_index is None:  # a static cache (encoder states)
        return cache[:, 0, ...], cache[:, 1, ...], cache
    start = [0, update_index, 0, 0]
    key = ops.slice_update(
        cache[:, 0, ...], start, split_heads(attention.key_projector(inputs))
    )
    value = ops.slice_update(
        cache[:, 1, ...], start, split_heads(attention.value_projector(inputs))
    )
    return key, value, ops.stack((key, value), axis=1)


def _position_bias(attention, query_length, key_length, query_start):
    """`(1, heads, queries, keys)`: the layer's relative position bias,
    or zeros in a layer without a bias table (all but a stack's first)."""
    if attention.use_relative_attention_bias:
        return attention.compute_bias(
            query_length, key_length, query_start_index=query_start
        )
    return ops.zeros(
        (1, attention.num_heads, query_length, key_length),
        attention.compute_dtype,
    )


def _masks(key_mask, causal, cache, query_length, key_length, query_start):
    """`(mask, is_causal)` for `keras.ops.dot_product_attention`: the
    key mask as a bool `(batch, 1, 1, keys)`, and causality as its own."""
    mask = None
    if key_mask is not None:
        mask = ops.cast(key_mask, "bool")[:, None, :, :]
    # Without a cache, queries and keys are the same positions: the
    # kernel's own causal mask (cuDNN then skips the masked blocks). With
    # one, the queries start at the cache index, as in keras-hub's mask.
    is_causal = bool(causal) and cache is None
    if causal and cache is not None:
        mask = _and(mask, _causal_mask(query_length, key_length, query_start))
    return mask, is_causal


def _causal_mask(query_length, key_length, query_start):
    """Bool `(1, 1, queries, keys)`: keys at or before each query."""
    query_position = ops.arange(query_length)[:, None] + query_start
    allowed = query_position >= ops.arange(key_length)[None, :]
    return allowed[None, None, :, :]


def _and(mask, other):
    return other if mask is None else ops.logical_and(mask, other)


def _unfused_with_dropout(attention, query, key, value, position_bias, mask):
    """keras-hub's arithmetic (its -1e9 where masked, its dropout layer),
    `(batch, queries, heads, head size)`."""
    scores = ops.einsum("bqnd,bknd->bnqk", query, key)
    scores = scores + ops.cast(position_bias, scores.dtype)
    if mask is not None:
        scores = ops.where(mask, scores, ops.cast(-1e9, scores.dtype))
    weights = ops.nn.softmax(scores, axis=-1)
    weights = attention.dropout_layer(weights, training=True)
    return ops.einsum("bnqk,bknd->bqnd", weights, value)
