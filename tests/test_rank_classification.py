"""Rank classification and label generation against numpy and by hand."""

import keras
import keras_hub
import numpy as np
import pytest

from keras_spactor.evaluation import rank_classification as rc
from keras_spactor.evaluation.label_generation import generate_labels
from tests.labelled_task_helpers import tiny_lm
from tests.labelled_task_helpers import tokenizer  # noqa: F401 (fixture)


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


def test_label_log_likelihoods_match_numpy_from_logits(tokenizer):  # noqa: F811
    lm = tiny_lm(tokenizer, seed=3)
    texts = ["dog runs", "the cat sleeps by the river", "red", "big old sun"]
    candidates = ["present", "absent", "dog cat"]  # different lengths
    actual = rc.label_log_likelihoods(lm, texts, candidates, batch_size=3)
    expected, lengths = _numpy_log_likelihoods(lm, texts, candidates)
    assert len(set(lengths)) > 1
    assert np.ptp(expected[:, 0]) > 1e-3  # the text matters
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-4)
    counts = rc.label_token_counts(lm, candidates)
    np.testing.assert_array_equal(counts, lengths)
    np.testing.assert_allclose(
        rc.label_scores(actual, counts, "mean"), expected / lengths, rtol=1e-5
    )
    np.testing.assert_allclose(
        rc.label_scores(actual, counts, "summed"), expected, rtol=1e-5
    )
    best = np.argmax(expected / lengths, axis=1)
    assert rc.rank_classify(lm, texts, candidates, "mean", batch_size=4) == [
        candidates[b] for b in best
    ]


def test_scoring_picks_the_label_by_total_or_per_token_likelihood():
    # One example, a 1-token label at log p = -3 and a 3-token label at
    # -1.5 per token: the sum prefers the short label, the mean the long.
    log_likelihoods = np.array([[-3.0 - 0.5, -4.5 - 1.5]])
    token_counts = np.array([1 + 1, 3 + 1])  # pieces + EOS
    summed = rc.label_scores(log_likelihoods, token_counts, "summed")
    mean = rc.label_scores(log_likelihoods, token_counts, "mean")
    assert np.argmax(summed) == 0
    assert np.argmax(mean) == 1
    np.testing.assert_allclose(mean, [[-1.75, -1.5]])
    with pytest.raises(ValueError, match="scoring must be one of"):
        rc.label_scores(log_likelihoods, token_counts, "max")


def test_generation_survives_ids_past_the_tokenizer(tokenizer):  # noqa: F811
    """A padded embedding's spare rows decode as <unk>, not as a crash."""
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
