"""The layers SpacTor adds to a T5 backbone: generator and heads."""

import keras

from keras_spactor.layers.generator_masked_lm_head import GeneratorMaskedLMHead
from keras_spactor.layers.replaced_token_detection_head import (
    ReplacedTokenDetectionHead,
)
from keras_spactor.layers.spactor_generator import SpacTorGenerator


def make_auxiliary_layers(
    backbone, num_layers, hidden_dim, num_heads, intermediate_dim
):
    """The generator, its MLM head and the RTD head for `backbone`.

    They take the backbone's activation, dropout, layer norm and dtype
    policy; not built yet.

    Args:
        backbone: a `keras_hub.models.T5Backbone`.
        num_layers: int. The generator's depth.
        hidden_dim: int. The generator's width.
        num_heads: int. The generator's attention heads.
        intermediate_dim: int. The generator's feed-forward width.

    Returns:
        `(generator, generator_head, rtd_head)`.
    """
    activation = keras.activations.serialize(backbone.activation)
    # A registered function (an imported T5 v1.1's `gelu_approximate`)
    # stays a dict: `keras.activations.get` takes no "package>name" string.
    if isinstance(activation, dict) and ">" not in str(activation["config"]):
        activation = activation.get("config", "gelu")
    # Same width and heads as the backbone: same head geometry too
    # (T5 v1.1 small has 6 heads of 64 in a 512-wide model, not 512 // 6).
    same_heads = (
        hidden_dim == backbone.hidden_dim and num_heads == backbone.num_heads
    )
    generator = SpacTorGenerator(
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        key_value_dim=backbone.key_value_dim if same_heads else None,
        intermediate_dim=intermediate_dim,
        embedding_dim=backbone.hidden_dim,
        activation=activation,
        use_gated_activation=backbone.use_gated_activation,
        dropout=backbone.dropout,
        layer_norm_epsilon=backbone.layer_norm_epsilon,
        dtype=backbone.dtype_policy,
        name="generator",
    )
    generator_head = GeneratorMaskedLMHead(
        vocabulary_size=backbone.vocabulary_size,
        embedding_dim=backbone.hidden_dim,
        dtype=backbone.dtype_policy,
        name="generator_head",
    )
    rtd_head = ReplacedTokenDetectionHead(
        hidden_dim=backbone.hidden_dim,
        dtype=backbone.dtype_policy,
        name="rtd_head",
    )
    return generator, generator_head, rtd_head
