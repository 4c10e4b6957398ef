"""Rank classification: every candidate label scored by its
log-likelihood under a `T5Seq2SeqLM`, the most likely one predicted.

This is how T5 and T0 evaluate classification. Unlike greedy generation it
always yields a valid label, so even a small model that would only emit
EOS gets a meaningful accuracy.
"""

import numpy as np

SCORINGS = ("mean", "summed")
# T5 and T0 rank by the label's log-probability; see BENCHMARKS.md for the
# measurements against the per-token mean.
DEFAULT_SCORING = "summed"


def label_token_counts(model, candidates):
    """Tokens each label is scored on: its pieces plus EOS."""
    tokenizer = model.preprocessor.tokenizer
    return np.array([len(tokenizer.tokenize(c)) + 1 for c in candidates])


def _log_likelihood_model(model):
    """A `keras.Model` mapping a preprocessed `(x, targets, target_mask)`
    batch to each row's summed target log-likelihood under `model` (a
    `T5Seq2SeqLM`); its `predict_on_batch` runs compiled and returns one
    number per row instead of the whole vocabulary's logits."""
    import keras
    from keras import ops

    x = {
        name: keras.Input(shape=(None,), dtype=tensor.dtype, name=name)
        for name, tensor in model.input.items()
    }
    targets = keras.Input(shape=(None,), dtype="int32", name="targets")
    mask = keras.Input(shape=(None,), dtype="float32", name="target_mask")
    logits = ops.cast(model(x), "float32")
    log_probs = ops.log_softmax(logits, axis=-1)
    picked = ops.take_along_axis(log_probs, targets[..., None], axis=-1)
    summed = ops.sum(picked[..., 0] * mask, axis=-1)
    return keras.Model([x, targets, mask], summed)


def label_log_likelihoods(model, texts, candidates, batch_size=16):
    """Log-likelihood of every candidate label for every text.

    Each label is teacher-forced through the decoder exactly as
    `T5Seq2SeqLMPreprocessor` packs training targets: decoder input
    `[<pad>, label tokens]`, targets `[label tokens, </s>]`. The model is
    run over all (text, label) pairs in batches of `batch_size` texts.

    Args:
        model: a `keras_hub.models.T5Seq2SeqLM` with its preprocessor
            (whose `encoder_sequence_length` applies).
        texts: list of str. Encoder inputs.
        candidates: list of str. The labels to score.
        batch_size: int. Texts per forward pass (times `len(candidates)`
            pairs).

    Returns:
        A float64 array `(len(texts), len(candidates))` of summed
        log-likelihoods (natural log) of label tokens + EOS.

    Example:
    ```python
    lm = keras_hub.models.T5Seq2SeqLM.from_preset("runs/sst2/preset")
    label_log_likelihoods(lm, ["a gem of a film"], ["negative", "positive"])
    ```
    """
    scorer = _log_likelihood_model(model)
    n = len(candidates)
    # Room for the longest label and EOS (the packer would cut it).
    decoder_length = int(label_token_counts(model, candidates).max())
    rows = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        x, targets, mask = model.preprocessor(
            {
                "encoder_text": [t for t in chunk for _ in range(n)],
                "decoder_text": list(candidates) * len(chunk),
            },
            decoder_sequence_length=decoder_length,
        )
        summed = scorer.predict_on_batch(
            [
                {k: np.asarray(v) for k, v in x.items()},
                np.asarray(targets, "int32"),
                np.asarray(mask, "float32"),
            ]
        )
        rows.append(np.asarray(summed, "float64").reshape(len(chunk), n))
    return np.concatenate(rows)


def label_scores(log_likelihoods, token_counts, scoring=DEFAULT_SCORING):
    """Turn summed log-likelihoods into ranking scores.

    Args:
        log_likelihoods: array `(examples, labels)`, summed over tokens.
        token_counts: array `(labels,)`, tokens + EOS of each label.
        scoring: `"summed"` (the label's log-probability) or `"mean"`
            (per token: divided by `token_counts`).

    Returns:
        An array shaped like `log_likelihoods`.
    """
    if scoring == "summed":
        return np.asarray(log_likelihoods)
    if scoring == "mean":
        return np.asarray(log_likelihoods) / np.asarray(token_counts)
    raise ValueError(f"scoring must be one of {SCORINGS}, got {scoring!r}")


def rank_classify(
    model, texts, candidates, scoring=DEFAULT_SCORING, batch_size=16
):
    """Predict, for each text, the candidate label of highest score.

    Args:
        model: a `keras_hub.models.T5Seq2SeqLM` with its preprocessor.
        texts: list of str.
        candidates: list of str. The labels to choose from.
        scoring: `"summed"` or `"mean"`; see `label_scores`.
        batch_size: int. Texts per forward pass.

    Returns:
        A list of str, one label per text.

    Example:
    ```python
    rank_classify(lm, ["a gem of a film"], ["negative", "positive"])
    ```
    """
    candidates = list(candidates)
    log_likelihoods = label_log_likelihoods(
        model, texts, candidates, batch_size
    )
    scores = label_scores(
        log_likelihoods, label_token_counts(model, candidates), scoring
    )
    return [candidates[i] for i in np.argmax(scores, axis=1)]
