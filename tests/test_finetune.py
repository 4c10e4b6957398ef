"""`finetune`: rank classification, its metrics and a tiny end to end."""

import io
import json
import math
import os

import keras
import keras_hub
import numpy as np
import pytest

from keras_spactor import finetune as ft
from keras_spactor.models.t5x_initialization import (
    initialize_embeddings_like_t5x,
)

WORDS = (
    "dog tree house river blue green runs sleeps big small car bird fish "
    "red old new sun moon road hill"
).split()
LABELS = ("absent", "present")


def _cat_sentences(count, seed):
    """Random-word sentences, half with "cat"; the label says which."""
    rng = np.random.RandomState(seed)
    rows = []
    for i in range(count):
        words = list(rng.choice(WORDS, size=rng.randint(4, 9)))
        if i % 2:
            words.insert(rng.randint(len(words) + 1), "cat")
        rows.append((LABELS[i % 2], " ".join(words)))
    return [rows[i] for i in rng.permutation(count)]


def _write_tsv(path, rows):
    with open(path, "w") as f:
        f.write("label\tsentence\n")
        f.writelines(f"{label}\t{text}\n" for label, text in rows)
    return str(path)


@pytest.fixture(scope="module")
def tokenizer():
    """A word-level SentencePiece vocabulary of the synthetic task (one
    piece per word, T5's special ids)."""
    import sentencepiece as spm

    documents = [t for _, t in _cat_sentences(400, seed=9)] + list(LABELS)
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(documents),
        model_writer=proto,
        model_type="word",
        vocab_size=64,
        hard_vocab_limit=False,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        minloglevel=2,
    )
    return keras_hub.models.T5Tokenizer(proto=proto.getvalue())


def _tiny_lm(tokenizer, seed=0):
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=tokenizer.vocabulary_size(),
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        key_value_dim=16,
        dropout=0.0,
        activation="gelu",
        use_gated_activation=True,
        tie_embedding_weights=False,
    )
    # keras-hub starts every token embedding near 1.0; a model trained from
    # scratch needs T5X's draws to tell its tokens apart.
    initialize_embeddings_like_t5x(backbone)
    preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer, encoder_sequence_length=16, decoder_sequence_length=8
    )
    return keras_hub.models.T5Seq2SeqLM(backbone, preprocessor=preprocessor)


@pytest.fixture(scope="module")
def preset(tokenizer, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("preset"))
    _tiny_lm(tokenizer).save_to_preset(path)
    return path


def _numpy_log_likelihoods(lm, texts, candidates):
    """log p(label + EOS | text) of every pair, from the model's logits and
    numpy. Packed by hand (encoder `text + </s>`, decoder input `<pad> +
    label`, targets `label + </s>`) and padded longer than the preprocessor
    would, which must not change the result."""
    tokenize = lm.preprocessor.tokenizer.tokenize
    pairs = [(t, c) for t in texts for c in candidates]
    encoder = np.zeros((len(pairs), 24), "int32")
    decoder = np.zeros((len(pairs), 12), "int32")
    targets = np.zeros((len(pairs), 12), "int32")
    for row, (text, label) in enumerate(pairs):
        text_ids = list(np.asarray(tokenize(text))) + [1]
        label_ids = list(np.asarray(tokenize(label)))
        encoder[row, : len(text_ids)] = text_ids
        decoder[row, : len(label_ids) + 1] = [0] + label_ids
        targets[row, : len(label_ids) + 1] = label_ids + [1]
    target_mask = np.zeros_like(targets, bool)
    for row, (_, label) in enumerate(pairs):
        target_mask[row, : len(tokenize(label)) + 1] = True
    x = {
        "encoder_token_ids": encoder,
        "encoder_padding_mask": encoder != 0,
        "decoder_token_ids": decoder,
        "decoder_padding_mask": target_mask,
    }
    logits = np.asarray(keras.ops.convert_to_numpy(lm(x)), "float64")
    top = logits.max(axis=-1, keepdims=True)
    log_softmax = logits - top - np.log(np.exp(logits - top).sum(-1))[..., None]
    picked = np.take_along_axis(log_softmax, targets[..., None], -1)[..., 0]
    summed = (picked * target_mask).sum(-1)
    lengths = target_mask.sum(-1)[: len(candidates)]
    return summed.reshape(len(texts), len(candidates)), lengths


def test_label_log_likelihoods_match_numpy_from_logits(tokenizer):
    lm = _tiny_lm(tokenizer, seed=3)
    texts = ["dog runs", "the cat sleeps by the river", "red", "big old sun"]
    candidates = ["present", "absent", "dog cat"]  # different lengths
    actual = ft.label_log_likelihoods(lm, texts, candidates, batch_size=3)
    expected, lengths = _numpy_log_likelihoods(lm, texts, candidates)
    assert len(set(lengths)) > 1
    assert np.ptp(expected[:, 0]) > 1e-3  # the text matters
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-4)
    counts = ft.label_token_counts(lm, candidates)
    np.testing.assert_array_equal(counts, lengths)
    np.testing.assert_allclose(
        ft.label_scores(actual, counts, "mean"), expected / lengths, rtol=1e-5
    )
    np.testing.assert_allclose(
        ft.label_scores(actual, counts, "summed"), expected, rtol=1e-5
    )
    best = np.argmax(expected / lengths, axis=1)
    assert ft.rank_classify(lm, texts, candidates, "mean", batch_size=4) == [
        candidates[b] for b in best
    ]


def test_scoring_picks_the_label_by_total_or_per_token_likelihood():
    # One example, a 1-token label at log p = -3 and a 3-token label at
    # -1.5 per token: the sum prefers the short label, the mean the long.
    log_likelihoods = np.array([[-3.0 - 0.5, -4.5 - 1.5]])
    token_counts = np.array([1 + 1, 3 + 1])  # pieces + EOS
    summed = ft.label_scores(log_likelihoods, token_counts, "summed")
    mean = ft.label_scores(log_likelihoods, token_counts, "mean")
    assert np.argmax(summed) == 0
    assert np.argmax(mean) == 1
    np.testing.assert_allclose(mean, [[-1.75, -1.5]])
    with pytest.raises(ValueError, match="scoring must be one of"):
        ft.label_scores(log_likelihoods, token_counts, "max")


def test_wilson_interval_matches_the_formula():
    # 81 of 100 at z = 1.96, by hand: p = 0.81, z^2/n = 0.038416,
    # centre = (0.81 + 0.019208) / 1.038416 = 0.798531,
    # half = 1.96 / 1.038416 * sqrt(0.81 * 0.19 / 100 + 3.8416 / 40000)
    #      = 0.076322.
    low, high = ft.wilson_interval(81, 100, z=1.96)
    assert low == pytest.approx(0.798531 - 0.076322, abs=2e-6)
    assert high == pytest.approx(0.798531 + 0.076322, abs=2e-6)
    # No successes: [0, z^2 / (n + z^2)].
    low, high = ft.wilson_interval(0, 10, z=1.96)
    assert low == pytest.approx(0.0, abs=1e-12)
    assert high == pytest.approx(3.8416 / 13.8416)
    low, high = ft.wilson_interval(50, 100)  # default 95%
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)


def test_majority_rate_and_label_counts_of_a_hand_made_tsv(tmp_path):
    path = tmp_path / "eval.tsv"
    path.write_text(
        "label\tsentence\nb\tone\na\ttwo\nb\tthree\nc\tfour\nb\tfive\n"
    )
    labels, texts = ft.read_labelled_tsv(str(path))
    assert labels == ["b", "a", "b", "c", "b"]
    assert texts[0] == "one"
    assert ft.majority_label(labels) == "b"
    assert ft.majority_label(["y", "x", "x", "y"]) == "x"  # ties: first
    assert ft.label_counts(labels) == {"a": 1, "b": 3, "c": 1}
    assert ft.label_counts(["a", "a"], candidates=["b", "a"]) == {
        "a": 2,
        "b": 0,
    }


@pytest.mark.slow
@pytest.mark.backend_independent
def test_finetune_metrics_describe_its_predictions(preset, tmp_path):
    train = _write_tsv(
        tmp_path / "train.tsv",
        [("absent", "dog runs"), ("absent", "red sun")] + [("present", "cat")],
    )
    evaluation = _write_tsv(
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
    labels, texts = ft.read_labelled_tsv(evaluation)
    predictions = ft.rank_classify(
        lm, texts, LABELS, metrics["scoring"], batch_size=5
    )
    counts = {c: predictions.count(c) for c in LABELS}
    assert metrics["prediction_counts"] == counts
    hits = sum(p == t for p, t in zip(predictions, labels))
    assert metrics["accuracy"] == metrics["rank_accuracy"] == hits / 5
    assert metrics["accuracy_interval"] == pytest.approx(
        ft.wilson_interval(hits, 5)
    )
    # The fit check re-scores the training examples the same way.
    train_labels, train_texts = ft.read_labelled_tsv(train)
    fitted = ft.rank_classify(lm, train_texts, LABELS, metrics["scoring"])
    assert metrics["train_accuracy"] == pytest.approx(
        np.mean([p == t for p, t in zip(fitted, train_labels)])
    )
    assert metrics["train_majority_accuracy"] == pytest.approx(2 / 3)


@pytest.mark.slow
@pytest.mark.backend_independent
def test_finetune_with_a_fresh_decoder_keeps_only_the_encoder(preset, tmp_path):
    train = _write_tsv(tmp_path / "t.tsv", _cat_sentences(8, seed=1))
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
def test_default_recipe_learns_whether_a_cat_is_mentioned(preset, tmp_path):
    train = _write_tsv(tmp_path / "train.tsv", _cat_sentences(200, seed=1))
    evaluation = _write_tsv(tmp_path / "eval.tsv", _cat_sentences(100, seed=2))
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


def test_generation_survives_ids_past_the_tokenizer(tokenizer):
    """A padded embedding's spare rows decode as <unk>, not as a crash."""
    from keras_spactor.finetune import generate_labels

    pieces = tokenizer.vocabulary_size()
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=pieces + 8,  # spare rows, as T5's 32,128 for 32,100
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        dropout=0.0,
        tie_embedding_weights=False,
    )
    preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer, encoder_sequence_length=8, decoder_sequence_length=4
    )
    lm = keras_hub.models.T5Seq2SeqLM(backbone, preprocessor=preprocessor)
    lm.compile(sampler="greedy")
    # Make a spare row the certain next token.
    output = keras.ops.convert_to_numpy(
        backbone.token_embedding.reverse_embeddings
    ).copy()
    output[:] = 0.0
    output[:, pieces + 3] = 100.0
    backbone.token_embedding.reverse_embeddings.assign(output)
    generated = generate_labels(lm, ["the cat sat", "a dog"], max_length=4)
    assert len(generated) == 2
    unknown = tokenizer.id_to_token(tokenizer.token_to_id("<unk>"))
    for text in generated:
        assert text.strip(), generated
        assert "cat" not in text
        assert set(text.split()) <= {unknown, "⁇"}, generated
    assert lm.preprocessor is preprocessor  # restored
