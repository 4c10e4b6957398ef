"""`finetune`: its recipe, its metrics and a tiny end to end."""

import json
import math
import os

import keras
import keras_hub
import numpy as np
import pytest

from keras_spactor.evaluation import finetuning as ft
from keras_spactor.evaluation import rank_classification as rc
from keras_spactor.evaluation.classification_metrics import wilson_interval
from keras_spactor.labelled_data import read_labelled_tsv
from tests.labelled_task_helpers import LABELS
from tests.labelled_task_helpers import cat_sentences
from tests.labelled_task_helpers import preset  # noqa: F401 (fixture)
from tests.labelled_task_helpers import tokenizer  # noqa: F401 (fixture)
from tests.labelled_task_helpers import write_tsv


@pytest.mark.slow
@pytest.mark.backend_independent
def test_finetune_metrics_describe_its_predictions(preset, tmp_path):  # noqa: F811
    train = write_tsv(
        tmp_path / "train.tsv",
        [("absent", "dog runs"), ("absent", "red sun")] + [("present", "cat")],
    )
    evaluation = write_tsv(
        tmp_path / "eval.tsv",
        [("present", "big cat"), ("present", "cat sleeps")]
        + [("absent", "old road"), ("present", "a cat"), ("absent", "sun")],
    )
    out = str(tmp_path / "out")
    metrics = ft.finetune(
        preset, train, evaluation, out, steps=2, warmup_steps=1, batch_size=5
    )
    with open(os.path.join(out, "metrics.json")) as f:
        assert json.load(f) == metrics
    assert metrics["evaluation_examples"] == 5
    assert metrics["majority_accuracy"] == pytest.approx(3 / 5)
    assert metrics["evaluation_majority_label"] == "present"
    assert metrics["train_majority_label"] == "absent"
    assert metrics["evaluation_label_counts"] == {"absent": 2, "present": 3}
    assert metrics["steps"] == 2
    assert len(metrics["train_loss_curve"]) == 2
    assert metrics["scoring"] == ft.DEFAULT_SCORING

    # The predictions are the saved model's best labels.
    lm = keras_hub.models.T5Seq2SeqLM.from_preset(os.path.join(out, "preset"))
    labels, texts = read_labelled_tsv(evaluation)
    predictions = rc.rank_classify(
        lm, texts, LABELS, metrics["scoring"], batch_size=5
    )
    counts = {c: predictions.count(c) for c in LABELS}
    assert metrics["prediction_counts"] == counts
    hits = sum(p == t for p, t in zip(predictions, labels))
    assert metrics["accuracy"] == metrics["rank_accuracy"] == hits / 5
    assert metrics["accuracy_interval"] == pytest.approx(
        wilson_interval(hits, 5)
    )
    # The fit check re-scores the training examples the same way.
    train_labels, train_texts = read_labelled_tsv(train)
    fitted = rc.rank_classify(lm, train_texts, LABELS, metrics["scoring"])
    assert metrics["train_accuracy"] == pytest.approx(
        np.mean([p == t for p, t in zip(fitted, train_labels)])
    )
    assert metrics["train_majority_accuracy"] == pytest.approx(2 / 3)


@pytest.mark.slow
@pytest.mark.backend_independent
def test_finetune_with_a_fresh_decoder_keeps_only_the_encoder(preset, tmp_path):  # noqa: F811
    train = write_tsv(tmp_path / "t.tsv", cat_sentences(8, seed=1))
    out = str(tmp_path / "out")
    # A learning rate too small to move anything in two steps: what differs
    # from the preset afterwards is what `decoder="fresh"` drew anew.
    metrics = ft.finetune(
        preset,
        train,
        train,
        out,
        steps=2,
        learning_rate=1e-12,
        decoder="fresh",
    )
    assert metrics["decoder"] == "fresh"
    before = keras_hub.models.T5Backbone.from_preset(preset)
    after = keras_hub.models.T5Backbone.from_preset(os.path.join(out, "preset"))
    for old, new in zip(before.weights, after.weights):
        moved = not np.allclose(
            keras.ops.convert_to_numpy(old),
            keras.ops.convert_to_numpy(new),
            atol=1e-6,
        )
        in_decoder = "decoder" in old.path or "reverse" in old.path
        if old.path.endswith("self_attention/embeddings"):
            continue  # both stacks' relative bias share this path
        if np.all(keras.ops.convert_to_numpy(old) == 1.0):
            continue  # layer norm scales: drawn anew, they are ones again
        assert moved == in_decoder, old.path


def test_training_steps_prefers_steps_over_epochs():
    assert ft.training_steps(7, 3, 100, 16) == 7
    assert ft.training_steps(None, 3, 100, 16) == 3 * math.ceil(100 / 16)
    assert ft.training_steps(None, None, 100, 16) == ft.DEFAULT_STEPS


@pytest.mark.slow
@pytest.mark.backend_independent
def test_default_recipe_learns_whether_a_cat_is_mentioned(preset, tmp_path):  # noqa: F811
    train = write_tsv(tmp_path / "train.tsv", cat_sentences(200, seed=1))
    evaluation = write_tsv(tmp_path / "eval.tsv", cat_sentences(100, seed=2))
    metrics = ft.finetune(
        preset, train, evaluation, str(tmp_path / "out"), encoder_length=16
    )
    assert metrics["majority_accuracy"] == 0.5
    assert metrics["accuracy"] >= 0.8, metrics
    assert metrics["accuracy_interval"][0] > metrics["majority_accuracy"]
    assert metrics["train_accuracy"] >= 0.8, metrics


def test_warmup_then_constant_learning_rate():
    schedule = ft.warmup_then_constant(1e-3, warmup_steps=10)
    rates = [float(schedule(step)) for step in (0, 5, 10, 11, 10_000)]
    np.testing.assert_allclose(rates, [0.0, 5e-4, 1e-3, 1e-3, 1e-3])
    assert ft.warmup_then_constant(1e-3, warmup_steps=0) == 1e-3


def test_loss_curve_averages_stretches_of_the_run():
    # Keras logs the running mean since the epoch began.
    losses = [4.0, 2.0, 3.0, 1.0, 5.0]
    curve = ft._loss_curve_callback(steps=5, windows=2)
    curve.on_train_begin()
    for batch, _ in enumerate(losses):
        running_mean = np.mean(losses[: batch + 1])
        curve.on_train_batch_end(batch, {"loss": running_mean})
    np.testing.assert_allclose(curve.curve, [3.0, 3.0])  # (4+2+3)/3, (1+5)/2
