"""Evaluating pre-trained models: held-out pre-training measures
(`validation_metrics`)."""

from keras_spactor.evaluation.validation import validation_metrics

__all__ = ["validation_metrics"]
