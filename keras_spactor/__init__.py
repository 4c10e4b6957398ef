"""keras-spactor: SpacTor-T5 pre-training for Keras 3 and keras-hub."""

from keras_spactor import _cli_startup  # noqa: F401 (first: quiets the CLI)
from keras_spactor import callbacks
from keras_spactor import data
from keras_spactor import distribution
from keras_spactor import evaluation
from keras_spactor import interchange
from keras_spactor import layers
from keras_spactor import models
from keras_spactor.interchange import export_to_transformers
from keras_spactor.models import SpacTorT5

__version__ = "0.1.0"

__all__ = [
    "SpacTorT5",
    "callbacks",
    "data",
    "distribution",
    "evaluation",
    "export_to_transformers",
    "interchange",
    "layers",
    "models",
]
