import json

import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_spactor.data.builtin_corpus import builtin_corpus_documents
from keras_spactor.data.model_arrays import model_batch_arrays
from keras_spactor.data.pretraining_dataset import pretraining_dataset
from keras_spactor.data.pretraining_dataset import span_corruption_examples
from keras_spactor.data.sources import DocumentStats
from keras_spactor.data.span_corruption import span_corruption_lengths
from keras_spactor.data.vocabulary import train_vocabulary

INPUTS_LENGTH = 64


def _expected_chunks(tokenizer, documents, tokens_length):
    """seqio's reduce_concat_tokens(128) + split_tokens, in plain Python."""
    documents = [d for d in documents if d.strip()]
    # Tokenized one by one, with the same (tf-text) SentencePiece: Python's
    # `sentencepiece` breaks some ties (e.g. "*****") differently. A fresh
    # copy: the session's tokenizer lost its TF resource if a test seeded
    # after making it (the library's pipeline is immune, a plain map not).
    fresh = keras_hub.models.T5Tokenizer(proto=tokenizer.proto)
    tokenized = list(
        tf.data.Dataset.from_tensor_slices(documents)
        .map(fresh)
        .as_numpy_iterator()
    )
    chunks = []
    for start in range(0, len(documents), 128):
        stream = []
        for ids in tokenized[start : start + 128]:
            stream.extend(ids.tolist())
        for i in range(0, len(stream), tokens_length):
            chunks.append(stream[i : i + tokens_length])
    return chunks


def _reconstruct(inputs, targets, vocabulary_size):
    """Puts the target spans back in place of the input sentinels."""
    is_sentinel = lambda t: t >= vocabulary_size - 100  # noqa: E731
    spans, key = {}, None
    for t in targets[:-1]:
        if is_sentinel(t):
            key = t
            spans[key] = []
        else:
            spans[key].append(t)
    out = []
    for t in inputs[:-1]:
        out.extend(spans[t] if is_sentinel(t) else [t])
    return out


def _check_reconstruction(tokenizer, source, documents, max_chunks):
    tokens_length, _ = span_corruption_lengths(INPUTS_LENGTH)
    expected = _expected_chunks(tokenizer, documents, tokens_length)
    ds = span_corruption_examples(
        source, tokenizer, inputs_length=INPUTS_LENGTH, seed=3
    )
    size = tokenizer.vocabulary_size()
    count = 0
    for want, ex in zip(expected[:max_chunks], ds.take(max_chunks)):
        inputs, targets = ex["inputs"].numpy(), ex["targets"].numpy()
        assert inputs[-1] == 1 and targets[-1] == 1
        assert _reconstruct(inputs.tolist(), targets.tolist(), size) == want
        count += 1
    assert count == min(max_chunks, len(expected))


def test_reconstruction_on_builtin_corpus(data_tokenizer):
    # All chunks: covers the short tails of the 128-document groups.
    _check_reconstruction(
        data_tokenizer,
        "builtin:python-docs",
        builtin_corpus_documents("train"),
        max_chunks=10_000,
    )


def test_reconstruction_on_shared_corpus(data_tokenizer, data_shared_corpus):
    import gzip

    with gzip.open(data_shared_corpus, "rt", encoding="utf-8") as f:
        documents = [json.loads(line)["text"] for _, line in zip(range(300), f)]
    _check_reconstruction(
        data_tokenizer, data_shared_corpus, documents, max_chunks=400
    )


def test_batch_format_contract(data_tokenizer):
    ds = pretraining_dataset(
        "builtin:python-docs",
        data_tokenizer,
        batch_size=4,
        inputs_length=INPUTS_LENGTH,
        shuffle_buffer=50,
        repeat=False,
    )
    targets_length = span_corruption_lengths(INPUTS_LENGTH)[1]
    x_spec, y_spec, w_spec = ds.element_spec
    assert sorted(x_spec) == [
        "decoder_padding_mask",
        "decoder_token_ids",
        "encoder_padding_mask",
        "encoder_token_ids",
    ]
    assert x_spec["encoder_token_ids"].shape == (4, INPUTS_LENGTH)
    assert x_spec["encoder_token_ids"].dtype == tf.int32
    assert x_spec["encoder_padding_mask"].shape == (4, INPUTS_LENGTH)
    assert x_spec["encoder_padding_mask"].dtype == tf.bool
    assert x_spec["decoder_token_ids"].shape == (4, targets_length)
    assert x_spec["decoder_token_ids"].dtype == tf.int32
    assert x_spec["decoder_padding_mask"].shape == (4, targets_length)
    assert x_spec["decoder_padding_mask"].dtype == tf.bool
    assert y_spec.shape == (4, targets_length) and y_spec.dtype == tf.int32
    assert w_spec.shape == (4, targets_length) and w_spec.dtype == tf.float32

    x, y, w = next(iter(ds))
    x = {k: v.numpy() for k, v in x.items()}
    y, w = y.numpy(), w.numpy()
    np.testing.assert_array_equal(x["decoder_token_ids"][:, 0], 0)
    np.testing.assert_array_equal(x["decoder_token_ids"][:, 1:], y[:, :-1])
    np.testing.assert_array_equal(x["decoder_padding_mask"], y != 0)
    np.testing.assert_array_equal(
        x["encoder_padding_mask"], x["encoder_token_ids"] != 0
    )
    np.testing.assert_array_equal(w, (y != 0).astype("float32"))


def test_statistics_over_many_chunks(data_tokenizer):
    inputs_length = 128
    tokens_length, targets_length = span_corruption_lengths(inputs_length)
    size = data_tokenizer.vocabulary_size()
    ds = pretraining_dataset(
        "builtin:python-docs",
        data_tokenizer,
        batch_size=16,
        inputs_length=inputs_length,
        shuffle_buffer=0,
        repeat=False,
    )
    noise = spans = total = full = 0
    for x, y, _ in ds:
        for inputs, targets in zip(x["encoder_token_ids"].numpy(), y.numpy()):
            for row in (inputs, targets):
                nonpad = row[row != 0]
                assert nonpad[-1] == 1  # last non-pad token is EOS
                assert (row[len(nonpad) :] == 0).all()
                sentinels = nonpad[nonpad >= size - 100]
                np.testing.assert_array_equal(
                    sentinels, size - 1 - np.arange(len(sentinels))
                )
            target_ids = targets[targets != 0]
            num_spans = int((target_ids >= size - 100).sum())
            num_noise = len(target_ids) - 1 - num_spans
            length = int((inputs != 0).sum()) - 1 - num_spans + num_noise
            if length != tokens_length:
                continue  # a group's short tail
            full += 1
            noise += num_noise
            spans += num_spans
            total += length
    assert full > 500
    assert abs(noise / total - 0.15) <= 0.01
    assert abs(noise / spans - 3.0) <= 0.2


def _first_batches(tokenizer, seed, n=3, **kwargs):
    ds = pretraining_dataset(
        "builtin:python-docs",
        tokenizer,
        batch_size=4,
        inputs_length=INPUTS_LENGTH,
        seed=seed,
        **kwargs,
    )
    return [
        (x["encoder_token_ids"].numpy(), y.numpy()) for x, y, _ in ds.take(n)
    ]


def test_determinism_and_seed_sensitivity(data_tokenizer):
    a = _first_batches(data_tokenizer, seed=1, shuffle_buffer=100)
    b = _first_batches(data_tokenizer, seed=1, shuffle_buffer=100)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    # Without shuffling, another seed changes only the noise masks.
    c = _first_batches(data_tokenizer, seed=1, shuffle_buffer=0)
    d = _first_batches(data_tokenizer, seed=2, shuffle_buffer=0)
    assert any((xc != xd).any() for (xc, _), (xd, _) in zip(c, d))


def test_repeat_gives_new_masks(data_tokenizer):
    docs = tf.data.Dataset.from_tensor_slices(["word " * 300])
    ds = span_corruption_examples(
        docs, data_tokenizer, inputs_length=INPUTS_LENGTH, repeat=True
    )
    tokens_length, _ = span_corruption_lengths(INPUTS_LENGTH)
    examples = [ex["inputs"].numpy() for ex in ds.take(12)]
    # Each repetition cuts the same chunks, corrupted with other seeds.
    per_epoch = len(
        _expected_chunks(data_tokenizer, ["word " * 300], tokens_length)
    )
    assert len(examples[0]) > 0
    assert any(
        len(a) != len(b) or (a != b).any()
        for a, b in zip(examples[:per_epoch], examples[per_epoch:])
    )


def test_skipped_documents_are_counted(data_tokenizer, tmp_path):
    path = tmp_path / "docs.jsonl"
    texts = ["alpha beta " * 100, "", "   ", "gamma \xff delta " * 50]
    path.write_bytes(
        b"".join(json.dumps({"text": t}).encode() + b"\n" for t in texts[:3])
        + b'{"text": "gamma \xff delta"}\n'
    )
    stats = DocumentStats()
    ds = pretraining_dataset(
        str(path),
        data_tokenizer,
        batch_size=1,
        inputs_length=INPUTS_LENGTH,
        repeat=False,
        stats=stats,
    )
    assert ds.document_stats is stats
    assert len(list(ds)) > 0
    assert stats.skipped_empty == 2 and stats.documents == 4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"noise_density": 0.0}, "noise_density"),
        ({"noise_density": 1.5}, "noise_density"),
        ({"mean_noise_span_length": 0.9}, "mean_noise_span_length"),
        ({"inputs_length": 1}, "inputs_length"),
        ({"batch_size": 0}, "batch_size"),
        ({"inputs_length": 4096}, "sentinels"),
    ],
)
def test_invalid_arguments(data_tokenizer, kwargs, message):
    args = {"batch_size": 2, "inputs_length": INPUTS_LENGTH}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        pretraining_dataset("builtin:python-docs", data_tokenizer, **args)


def test_rejects_vocabulary_without_sentinels(tmp_path):
    info = train_vocabulary(
        builtin_corpus_documents("train")[:60],
        str(tmp_path / "v"),
        vocabulary_size=300,
        num_sentinels=0,
    )
    tokenizer = keras_hub.models.T5Tokenizer(proto=info["model_file"])
    with pytest.raises(ValueError, match="<extra_id_0>"):
        pretraining_dataset("builtin:python-docs", tokenizer, batch_size=2)


def test_missing_file_and_bad_jsonl(data_tokenizer, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jsonl.gz"):
        pretraining_dataset(
            str(tmp_path / "missing.jsonl.gz"), data_tokenizer, batch_size=2
        )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": oops}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl, line 2"):
        pretraining_dataset(str(bad), data_tokenizer, batch_size=2)


def test_set_random_seed_at_any_point_keeps_the_pipeline_working(
    data_tokenizer,
):
    """`keras.utils.set_random_seed` clears TF's kernel caches, and with them
    the SentencePiece model of a tokenizer made eagerly. Seeding after the
    tokenizer, after the dataset, or between two batches of one iterator
    must not break tokenization."""
    import keras

    def first_targets(batch):
        return batch[1].numpy()

    tokenizer = keras_hub.models.T5Tokenizer(proto=data_tokenizer.proto)
    keras.utils.set_random_seed(3)  # after the tokenizer
    dataset = pretraining_dataset(
        "builtin:python-docs",
        tokenizer,
        batch_size=2,
        inputs_length=32,
        shuffle_buffer=0,  # each new iterator gives the same batches
    )
    expected = first_targets(next(iter(dataset)))
    assert int(expected.max()) > 2
    keras.utils.set_random_seed(4)  # after the dataset
    np.testing.assert_array_equal(first_targets(next(iter(dataset))), expected)
    iterator = iter(dataset)
    next(iterator)
    keras.utils.set_random_seed(5)  # between two batches of one iterator
    assert int(next(iterator)[1].numpy().max()) > 2
    # The tokenizer the caller holds still works eagerly too.
    assert len(tokenizer(["def"])) == 1


def test_model_batch_arrays_rebuild_the_pipelines_batch(data_tokenizer):
    # The numpy path (batches stored once, read without TensorFlow) must
    # give what `pretraining_dataset` gives from its inputs and targets.
    ds = pretraining_dataset(
        "builtin:python-docs", data_tokenizer, batch_size=4, inputs_length=64
    )
    x, y, sample_weight = next(iter(ds))
    x2, y2, sample_weight2 = model_batch_arrays(
        x["encoder_token_ids"].numpy(), y.numpy()
    )
    assert sorted(x2) == sorted(x)
    for key in x:
        np.testing.assert_array_equal(x2[key], x[key].numpy())
        assert x2[key].dtype == x[key].numpy().dtype
    np.testing.assert_array_equal(y2, y.numpy())
    np.testing.assert_array_equal(sample_weight2, sample_weight.numpy())
