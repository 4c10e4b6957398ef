from keras_spactor.callbacks.tau_scheduler import TauScheduler
from keras_spactor.callbacks.training_progress import TrainingProgress

__all__ = ["TauScheduler", "TrainingProgress"]
