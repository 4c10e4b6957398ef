import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_spactor")
class GeneratorMaskedLMHead(keras.layers.Layer):
    """ELECTRA's generator head, tied to the T5 model's INPUT embedding.

    dense → activation → layer norm → logits against the input embedding
    matrix, scaled by `embedding_dim**-0.5` (as T5's tied LM head scales
    its input, so that logits start at std ~1 against an N(0, 1)
    embedding), plus a bias. keras-hub's `MaskedLMHead` ties to
    `token_embedding(x, reverse=True)`, which for T5 v1.1's untied embeddings
    is the decoder's output matrix; ELECTRA ties the generator to the input
    embedding, so the matrix is passed in explicitly.

    The head is applied to the hidden states gathered at the masked positions
    only (`[batch, num_predictions, dim]`), never to every position.

    Args:
        vocabulary_size: int. Rows of the embedding matrix (logits width).
        embedding_dim: int. Width of the embedding matrix.
        activation: str. Activation after the first dense layer.
        layer_norm_epsilon: float. Epsilon of the layer norm.

    Example:
    ```python
    head = GeneratorMaskedLMHead(vocabulary_size=100, embedding_dim=16)
    embeddings = keras.random.normal((100, 16))
    logits = head(keras.random.normal((2, 3, 16)), embeddings)  # (2, 3, 100)
    ```
    """

    def __init__(
        self,
        vocabulary_size,
        embedding_dim,
        activation="gelu",
        layer_norm_epsilon=1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.embedding_dim = embedding_dim
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.dense = keras.layers.Dense(
            embedding_dim,
            activation=activation,
            dtype=self.dtype_policy,
            name="dense",
        )
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon,
            dtype=self.dtype_policy,
            name="layer_norm",
        )

    # Keras matches `<call argument>_shape` names when it builds the layer
    # on a first call or computes a symbolic output.
    def build(self, hidden_states_shape, embeddings_shape=None):
        self.dense.build(hidden_states_shape)
        self.layer_norm.build(
            tuple(hidden_states_shape)[:-1] + (self.embedding_dim,)
        )
        self.bias = self.add_weight(
            name="bias",
            shape=(self.vocabulary_size,),
            initializer="zeros",
        )
        self.built = True

    def call(self, hidden_states, embeddings):
        x = self.layer_norm(self.dense(hidden_states))
        embeddings = ops.cast(embeddings, x.dtype)
        x = x * ops.cast(self.embedding_dim**-0.5, x.dtype)
        logits = ops.matmul(x, ops.transpose(embeddings))
        return logits + ops.cast(self.bias, logits.dtype)

    def compute_output_shape(self, hidden_states_shape, embeddings_shape=None):
        return tuple(hidden_states_shape)[:-1] + (self.vocabulary_size,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "embedding_dim": self.embedding_dim,
                "activation": self.activation,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
