from keras_spactor.callbacks.tau_scheduler import TauScheduler

__all__ = ["TauScheduler"]
