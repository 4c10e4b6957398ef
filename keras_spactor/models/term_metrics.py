"""The loss terms' trackers and the logs `fit` shows, apart from the
objective that computes the terms."""

import keras

from keras_spactor.models import loss_terms

# Each loss term's trackers (as named in the logs) and accuracy.
TERM_METRICS = {
    "sc": ("sc_loss", "sc_accuracy", loss_terms.categorical_accuracy),
    "mlm": ("mlm_loss", "generator_accuracy", loss_terms.categorical_accuracy),
    "rtd": ("rtd_loss", "rtd_accuracy", loss_terms.binary_accuracy),
}
# The trackers that only stage-1 steps update.
HYBRID_ONLY_METRICS = TERM_METRICS["mlm"][:2] + TERM_METRICS["rtd"][:2]


class TermMetrics:
    """A `keras.Model` mixin: a `Mean` tracker of the total loss and of each
    term's loss and accuracy, updated from `compute_losses`' outputs.

    Call `make_term_trackers()` in the model's constructor, and list the
    mixin before `TwoStageTrainer`, whose `update_metrics` is the
    contract's placeholder.
    """

    def make_term_trackers(self):
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.sc_loss_tracker = keras.metrics.Mean(name="sc_loss")
        self.sc_accuracy_tracker = keras.metrics.Mean(name="sc_accuracy")
        self.mlm_loss_tracker = keras.metrics.Mean(name="mlm_loss")
        self.generator_accuracy_tracker = keras.metrics.Mean(
            name="generator_accuracy"
        )
        self.rtd_loss_tracker = keras.metrics.Mean(name="rtd_loss")
        self.rtd_accuracy_tracker = keras.metrics.Mean(name="rtd_accuracy")

    @property
    def metrics(self):
        return [
            self.loss_tracker,
            self.sc_loss_tracker,
            self.sc_accuracy_tracker,
            self.mlm_loss_tracker,
            self.generator_accuracy_tracker,
            self.rtd_loss_tracker,
            self.rtd_accuracy_tracker,
        ]

    def update_metrics(self, outputs, training=True):
        """Update the trackers of the terms in `outputs`; return the logs.

        Accuracies are computed here, from the terms' `Scored`. Training
        logs list every tracker (a stage-2 step leaves the stage-1 ones
        as they are), evaluation logs the span-corruption ones.
        """
        trackers = {metric.name: metric for metric in self.metrics}
        trackers["loss"].update_state(outputs["loss"])
        for term, (loss, accuracy, accuracy_of) in TERM_METRICS.items():
            if term in outputs:
                trackers[loss].update_state(outputs[f"{term}_loss"])
                trackers[accuracy].update_state(accuracy_of(outputs[term]))
        return {
            metric.name: metric.result()
            for metric in self.metrics
            if training or metric.name not in HYBRID_ONLY_METRICS
        }
