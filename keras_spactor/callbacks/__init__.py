from keras_spactor.callbacks.atomic_checkpoint import AtomicCheckpoint
from keras_spactor.callbacks.stage_progbar_logger import StageProgbarLogger
from keras_spactor.callbacks.stop_on_non_finite_loss import StopOnNonFiniteLoss
from keras_spactor.callbacks.tau_scheduler import TauScheduler
from keras_spactor.callbacks.training_progress import TrainingProgress

__all__ = [
    "AtomicCheckpoint",
    "StageProgbarLogger",
    "StopOnNonFiniteLoss",
    "TauScheduler",
    "TrainingProgress",
]
