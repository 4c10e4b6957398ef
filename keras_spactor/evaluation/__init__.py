"""Evaluating pre-trained models.

- `validation_metrics`: held-out span-corruption loss, how much of it the
  encoder explains, and how alike the encoder's outputs are.
- `finetune`: fine-tune a preset on a labelled task (a TSV, a shipped
  example set or a TFDS split) with keras-hub's `T5Seq2SeqLM`, scored by
  rank classification (`rank_classify`, `label_log_likelihoods`,
  `label_scores`); a bad setting or source raises `FinetuningInputError`
  before any model is loaded.
- `linear_probe`: a logistic regression on the frozen encoder's outputs
  (the function; its helpers are in the module of the same name,
  `keras_spactor.evaluation.linear_probe`, imported by its full name).
- The statistics they report: `wilson_interval`, `majority_accuracy`,
  `exact_match_accuracy`, `label_counts`; and to compare two recipes over
  seeds, `mean_and_std` and `paired_difference`.
"""

from keras_spactor.evaluation.classification_metrics import exact_match_accuracy
from keras_spactor.evaluation.classification_metrics import label_counts
from keras_spactor.evaluation.classification_metrics import majority_accuracy
from keras_spactor.evaluation.classification_metrics import majority_label
from keras_spactor.evaluation.classification_metrics import wilson_interval
from keras_spactor.evaluation.finetuning import finetune
from keras_spactor.evaluation.finetuning_inputs import FinetuningInputError
from keras_spactor.evaluation.label_generation import generate_labels
from keras_spactor.evaluation.labelled_tasks import read_task
from keras_spactor.evaluation.linear_probe import linear_probe
from keras_spactor.evaluation.paired_statistics import mean_and_std
from keras_spactor.evaluation.paired_statistics import paired_difference
from keras_spactor.evaluation.rank_classification import label_log_likelihoods
from keras_spactor.evaluation.rank_classification import label_scores
from keras_spactor.evaluation.rank_classification import rank_classify
from keras_spactor.evaluation.validation import validation_metrics

__all__ = [
    "FinetuningInputError",
    "exact_match_accuracy",
    "finetune",
    "generate_labels",
    "label_counts",
    "label_log_likelihoods",
    "label_scores",
    "linear_probe",
    "majority_accuracy",
    "majority_label",
    "mean_and_std",
    "paired_difference",
    "rank_classify",
    "read_task",
    "validation_metrics",
    "wilson_interval",
]
