from keras_spactor.models.spactor_t5 import SpacTorT5

__all__ = ["SpacTorT5"]
