import keras

from keras_spactor._keras_hub_compat import T5LayerNorm
from keras_spactor._keras_hub_compat import T5TransformerLayer


@keras.saving.register_keras_serializable(package="keras_spactor")
class SpacTorGenerator(keras.layers.Layer):
    """The small T5-style encoder that fills `[MASK]`ed tokens (ELECTRA's G).

    The generator does not own a token embedding: it reads the embedded
    encoder inputs of the T5 model it trains with (the embedding is
    shared). It is a stack of keras-hub `T5TransformerLayer`s
    (relative attention bias in the first layer, as in T5) and a final
    `T5LayerNorm`. When `hidden_dim` differs from the embedding width,
    a dense projection maps the embeddings in (ELECTRA does the same for
    its smaller generators).

    Args:
        num_layers: int. Number of transformer layers.
        num_heads: int. Attention heads per layer.
        hidden_dim: int. Width of the generator's transformer layers.
        intermediate_dim: int. Width of the feed-forward blocks.
        embedding_dim: int. Width of the shared token embedding.
        key_value_dim: int. Per-head key/value width. Defaults to
            `hidden_dim // num_heads`.
        activation: str. Feed-forward activation.
        use_gated_activation: bool. Gated feed-forward (T5 v1.1's GEGLU).
        dropout: float. Dropout rate.
        layer_norm_epsilon: float. Epsilon of the T5 layer norms.

    Example:
    ```python
    generator = SpacTorGenerator(
        num_layers=1, num_heads=2, hidden_dim=64, intermediate_dim=128,
        embedding_dim=64,
    )
    hidden = generator(keras.ops.ones((2, 8, 64)), keras.ops.ones((2, 8)))
    ```
    """

    def __init__(
        self,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim,
        embedding_dim,
        key_value_dim=None,
        activation="gelu",
        use_gated_activation=True,
        dropout=0.0,
        layer_norm_epsilon=1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.embedding_dim = embedding_dim
        self.key_value_dim = key_value_dim
        self.activation = activation
        self.use_gated_activation = use_gated_activation
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon

        self.embedding_projection = None
        if hidden_dim != embedding_dim:
            self.embedding_projection = keras.layers.Dense(
                hidden_dim,
                use_bias=False,
                dtype=self.dtype_policy,
                name="embedding_projection",
            )
        self.transformer_layers = [
            T5TransformerLayer(
                is_decoder=False,
                hidden_dim=hidden_dim,
                intermediate_dim=intermediate_dim,
                key_value_dim=key_value_dim or hidden_dim // num_heads,
                dropout=dropout,
                activation=activation,
                layer_norm_epsilon=layer_norm_epsilon,
                num_heads=num_heads,
                use_gated_activation=use_gated_activation,
                use_relative_attention_bias=(i == 0),
                dtype=self.dtype_policy,
                name=f"transformer_layer_{i}",
            )
            for i in range(num_layers)
        ]
        self.output_layer_norm = T5LayerNorm(
            epsilon=layer_norm_epsilon,
            dtype=self.dtype_policy,
            name="output_layer_norm",
        )

    def build(self, embeddings_shape, padding_mask_shape=None):
        shape = tuple(embeddings_shape)
        if self.embedding_projection is not None:
            self.embedding_projection.build(shape)
        shape = shape[:-1] + (self.hidden_dim,)
        # `T5TransformerLayer` creates its sub-layers' weights on first call,
        # so build by running once on a one-token dummy input.
        dummy = keras.ops.zeros((1, 1, self.hidden_dim), self.compute_dtype)
        mask = keras.ops.ones((1, 1, 1), "int32")
        bias = None
        for layer in self.transformer_layers:
            dummy, bias = layer(dummy, attention_mask=mask, position_bias=bias)
        self.output_layer_norm.build(shape)
        self.built = True

    def call(self, embeddings, padding_mask, training=None):
        x = embeddings
        if self.embedding_projection is not None:
            x = self.embedding_projection(x)
        attention_mask = keras.ops.cast(padding_mask, "int32")[:, None, :]
        position_bias = None
        for layer in self.transformer_layers:
            x, position_bias = layer(
                x,
                attention_mask=attention_mask,
                position_bias=position_bias,
                use_causal_mask=False,
                training=training,
            )
        return self.output_layer_norm(x)

    def compute_output_shape(self, embeddings_shape, padding_mask_shape=None):
        return tuple(embeddings_shape)[:-1] + (self.hidden_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "hidden_dim": self.hidden_dim,
                "intermediate_dim": self.intermediate_dim,
                "embedding_dim": self.embedding_dim,
                "key_value_dim": self.key_value_dim,
                "activation": self.activation,
                "use_gated_activation": self.use_gated_activation,
                "dropout": self.dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
