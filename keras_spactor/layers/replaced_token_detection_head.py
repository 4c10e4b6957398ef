import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_spactor")
class ReplacedTokenDetectionHead(keras.layers.Layer):
    """ELECTRA's discriminator head: one logit per position, "replaced?".

    dense(hidden_dim) → activation → dense(1), applied to the T5 encoder's
    output. A positive logit means "this token was replaced by the
    generator".

    Args:
        hidden_dim: int. Width of the hidden dense layer.
        activation: str. Activation of the hidden layer.

    Example:
    ```python
    head = ReplacedTokenDetectionHead(hidden_dim=16)
    logits = head(keras.random.normal((2, 8, 16)))  # shape (2, 8)
    ```
    """

    def __init__(self, hidden_dim, activation="gelu", **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.activation = activation
        self.dense = keras.layers.Dense(
            hidden_dim,
            activation=activation,
            dtype=self.dtype_policy,
            name="dense",
        )
        self.output_dense = keras.layers.Dense(
            1, dtype=self.dtype_policy, name="output_dense"
        )

    def build(self, hidden_shape):
        self.dense.build(hidden_shape)
        self.output_dense.build(tuple(hidden_shape)[:-1] + (self.hidden_dim,))
        self.built = True

    def call(self, hidden_states):
        logits = self.output_dense(self.dense(hidden_states))
        return ops.squeeze(logits, axis=-1)

    def compute_output_shape(self, hidden_shape):
        return tuple(hidden_shape)[:-1]

    def get_config(self):
        config = super().get_config()
        config.update(
            {"hidden_dim": self.hidden_dim, "activation": self.activation}
        )
        return config
