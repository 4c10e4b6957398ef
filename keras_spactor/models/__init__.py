from keras_spactor.models.spactor_t5 import SpacTorT5
from keras_spactor.models.spactor_t5_preprocessor import SpacTorT5Preprocessor
from keras_spactor.models.t5x_initialization import (
    initialize_embeddings_like_t5x,
)

__all__ = [
    "SpacTorT5",
    "SpacTorT5Preprocessor",
    "initialize_embeddings_like_t5x",
]
