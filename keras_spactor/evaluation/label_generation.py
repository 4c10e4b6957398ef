"""Greedy generation of labels with a `T5Seq2SeqLM` (exact-match
evaluation, beside rank classification)."""

import numpy as np


def generate_labels(model, texts, max_length, batch_size=16):
    """Greedy generation of each text's label (the model must be compiled
    with `sampler="greedy"`).

    T5 embeddings have spare rows past the tokenizer's pieces (32,128 rows
    for 32,100 pieces); a barely trained model may still pick one, and the
    SentencePiece detokenizer fails on it ("piece id is out of range"). Such
    ids are decoded as `<unk>` here.

    Args:
        model: a `keras_hub.models.T5Seq2SeqLM` with its preprocessor.
        texts: list of str.
        max_length: int. Decoder tokens to generate, at most.
        batch_size: int.

    Returns:
        A list of str.

    Example:
    ```python
    generate_labels(lm, ["a gem of a film"], max_length=4)
    ```
    """
    preprocessor = model.preprocessor
    tokenizer = preprocessor.tokenizer
    pieces = tokenizer.vocabulary_size()
    unknown = tokenizer.token_to_id("<unk>")
    stop_ids = (tokenizer.end_token_id,)
    generated = []
    # Without its preprocessor, `generate` maps token ids to token ids.
    model.preprocessor = None
    try:
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            x = preprocessor.generate_preprocess(
                {"encoder_text": chunk, "decoder_text": [""] * len(chunk)},
                decoder_sequence_length=max_length,
            )
            x = {k: np.asarray(v) for k, v in x.items()}
            out = model.generate(
                x, max_length=max_length, stop_token_ids=stop_ids
            )
            out = {k: np.asarray(v) for k, v in out.items()}
            ids = out["decoder_token_ids"]
            out["decoder_token_ids"] = np.where(ids < pieces, ids, unknown)
            strings = preprocessor.generate_postprocess(out)
            generated.extend(_as_str(s) for s in strings)
    finally:
        model.preprocessor = preprocessor
    return generated


def _as_str(value):
    value = value.numpy() if hasattr(value, "numpy") else value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
