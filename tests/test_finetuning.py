"""`finetune`: its recipe, its metrics and a tiny end to end."""

import json
import math
import os

import keras
import keras_hub
import numpy as np
import pytest

from keras_spactor.evaluation import finetuning as ft
from keras_spactor.evaluation import finetuning_inputs as inputs
from keras_spactor.evaluation import rank_classification as rc
from keras_spactor.evaluation.classification_metrics import wilson_interval
from keras_spactor.evaluation.finetuning_inputs import FinetuningInputError
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
    assert inputs.training_steps(7, 3, 100, 16) == 7
    assert inputs.training_steps(None, 3, 100, 16) == 3 * math.ceil(100 / 16)
    assert inputs.training_steps(None, None, 100, 16) == inputs.DEFAULT_STEPS
    # The warmup: a tenth of the run by default, never longer than it.
    assert inputs.finetuning_steps(None, 2, None, 100, 16) == (14, 1)
    assert inputs.finetuning_steps(10, None, 10, 100, 16) == (10, 10)
    with pytest.raises(FinetuningInputError, match="`warmup_steps` 11"):
        inputs.finetuning_steps(10, None, 11, 100, 16)


def test_finetune_checks_its_inputs_before_loading_a_model(tmp_path):
    # No preset exists: each error below comes before any model is loaded.
    no_preset = str(tmp_path / "preset")
    train = write_tsv(
        tmp_path / "t.tsv", [("absent", "dog"), ("present", "a cat")]
    )
    unseen = write_tsv(tmp_path / "u.tsv", [("neutral", "so so")])
    out = str(tmp_path / "out")

    def error(**changes):
        arguments = dict(
            preset=no_preset, train_path=train, validation_path=train
        )
        with pytest.raises(FinetuningInputError) as caught:
            ft.finetune(output_dir=out, **{**arguments, **changes})
        return str(caught.value)

    assert error(learning_rate=0.0) == (
        "`learning_rate` must be positive, got 0.0"
    )
    assert error(dropout=1.0) == "`dropout` must be in [0, 1), got 1.0"
    assert error(scoring="max").startswith("scoring must be one of")
    assert error(decoder="new").startswith("decoder must be one of")
    assert error(steps=10, warmup_steps=11) == (
        "`warmup_steps` 11 is not in [0, 10 steps]"
    )
    assert "unseen in training: ['neutral']" in error(validation_path=unseen)
    missing = str(tmp_path / "x.tsv")
    assert "No such labelled TSV file" in error(train_path=missing)
    assert "Unknown example data set 'nope'" in error(train_path="builtin:nope")
    # A fresh decoder needs a preset folder with untied embeddings.
    os.makedirs(no_preset)
    assert "no readable keras-hub config.json" in error(decoder="fresh")
    with open(os.path.join(no_preset, "config.json"), "w") as f:
        json.dump({"config": {"tie_embedding_weights": True}}, f)
    assert error(decoder="fresh").startswith("`decoder` fresh: ")
    assert not os.path.exists(out)


def test_labelled_task_sources_and_data_folder(tmp_path):
    out = tmp_path / "out"
    train, evaluation = inputs.read_labelled_task(
        "builtin:sentiment-tiny",
        "builtin:sentiment-tiny",
        str(out),
        max_validation=4,
    )
    assert len(train[0]) == 40 and len(evaluation[0]) == 4
    assert set(train[0]) == {"negative", "positive"}
    assert not set(train[1]) & set(evaluation[1])  # the two shipped splits
    assert not out.exists()  # shipped examples are read where they are
    # A failed TFDS source removes the data folder only if it made it.
    (out / "data").mkdir(parents=True)
    (out / "data" / "keep.tsv").write_text("earlier work")
    with pytest.raises(FinetuningInputError, match="expected tfds:NAME"):
        inputs.read_labelled_task("tfds:", "builtin:sentiment-tiny", str(out))
    assert (out / "data" / "keep.tsv").read_text() == "earlier work"


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
