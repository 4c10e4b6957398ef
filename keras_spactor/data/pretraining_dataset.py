"""The span-corruption pre-training input pipeline (pure `tf.data`)."""

import tensorflow as tf

from keras_spactor.data.sources import DocumentStats
from keras_spactor.data.sources import text_dataset
from keras_spactor.data.span_corruption import span_corruption
from keras_spactor.models.spactor_t5_preprocessor import as_preprocessor

# seqio's `reduce_concat_tokens(batch_size=128)`.
DOCUMENTS_PER_GROUP = 128


def _split_into_chunks(tokens, chunk_length):
    """Cuts a 1D tensor into a ragged [num_chunks, None]; the tail is short."""
    n = tf.size(tokens)
    num_chunks = (n + chunk_length - 1) // chunk_length
    starts = tf.range(num_chunks) * chunk_length
    return tf.RaggedTensor.from_row_lengths(
        tokens, tf.minimum(chunk_length, n - starts)
    )


def _tokenizer_of_this_graph(tokenizer):
    """A copy of a SentencePiece tokenizer whose TF resource lives in the
    graph being traced (the pipeline's), or `tokenizer` itself.

    A tokenizer made eagerly keeps its SentencePiece model in TensorFlow's
    kernel cache, which `keras.utils.set_random_seed` clears: a pipeline
    that captured it then fails with "SentencepieceOp ... does not exist".
    Made inside the pipeline's function, the resource belongs to the
    dataset, so seeding before or after building it is safe.
    """
    proto = getattr(tokenizer, "proto", None)
    if proto is None or not hasattr(tokenizer, "set_proto"):
        return tokenizer
    copy = type(tokenizer).from_config(tokenizer.get_config())
    copy.set_proto(proto)
    return copy


def _pad_to(tokens, length, pad_id):
    tokens = tokens[:length]
    tokens = tf.pad(
        tokens, [[0, length - tf.size(tokens)]], constant_values=pad_id
    )
    return tf.ensure_shape(tokens, [length])


def span_corruption_examples(
    source,
    tokenizer,
    inputs_length=None,
    noise_density=None,
    mean_noise_span_length=None,
    seed=0,
    split="train",
    shuffle_buffer=None,
    repeat=False,
    num_parallel_calls=tf.data.AUTOTUNE,
    stats=None,
):
    """Un-batched, un-padded span-corruption examples of a text source.

    seqio's T5 recipe: documents are tokenized without EOS; groups of 128
    consecutive documents are concatenated with no separator (seqio's
    `reduce_concat_tokens(batch_size=128)`) and each group's stream is cut
    into chunks of `tokens_length` raw tokens (seqio's `split_tokens`), so
    the tail of every group is a shorter chunk, as in seqio. Each chunk is
    corrupted by `span_corruption` with a seed folded statelessly from
    `(seed, chunk index)`: the same seed and data give the same examples on
    every backend and after a restart.

    Args:
        source: a text source spec or a dataset of scalar strings (see
            `keras_spactor.data.text_dataset`).
        tokenizer: a `keras_spactor.models.SpacTorT5Preprocessor` (its
            ids and lengths), or a `keras_hub.models.T5Tokenizer` whose
            last pieces are T5's sentinels, `<extra_id_0>` last (then
            the arguments below, or their defaults, make the
            preprocessor).
        inputs_length: int (default 512). Encoder length; sets
            `tokens_length`. `None`: the preprocessor's.
        noise_density: float in (0, 1) (default 0.15).
        mean_noise_span_length: float >= 1 (default 3.0).
        seed: int. Seeds the noise masks and the shuffles.
        split: split of the source.
        shuffle_buffer: int or `None`. Shuffle documents (before grouping)
            and examples with this buffer size; `None` or 0 keeps the order.
        repeat: bool. Repeat the documents forever.
        num_parallel_calls: parallelism of the tokenize and corrupt maps.
        stats: optional `DocumentStats` that counts read and skipped
            (empty) documents.

    Returns:
        A dataset of dicts with 1D int32 `"inputs"` and `"targets"`, EOS
        included.
    """
    preprocessor = _checked_preprocessor(
        tokenizer, inputs_length, noise_density, mean_noise_span_length
    )
    documents = _documents(source, split, seed, shuffle_buffer, repeat, stats)
    chunks = _token_chunks(documents, preprocessor, num_parallel_calls)
    examples = _corrupted(chunks, preprocessor, seed, num_parallel_calls)
    if shuffle_buffer:
        examples = examples.shuffle(shuffle_buffer, seed=seed)
    return examples


def _documents(source, split, seed, shuffle_buffer, repeat, stats):
    """The source's documents (blank ones skipped and counted in `stats`),
    shuffled and repeated if asked."""
    if isinstance(source, tf.data.Dataset):
        stats = stats if stats is not None else DocumentStats()
        documents = source.filter(stats.count)
    else:
        # A seed also shuffles the shard order of an `hf:` source.
        documents = text_dataset(
            source,
            split=split,
            stats=stats,
            seed=seed if shuffle_buffer else None,
        )
    if shuffle_buffer:
        documents = documents.shuffle(shuffle_buffer, seed=seed)
    if repeat:
        documents = documents.repeat()
    return documents


def _token_chunks(documents, preprocessor, num_parallel_calls):
    """seqio's grouping: each group of `DOCUMENTS_PER_GROUP` documents,
    tokenized without EOS and concatenated, cut into chunks of
    `tokens_length` tokens (the group's tail a shorter one)."""
    tokenizer = preprocessor.tokenizer
    tokens_length = preprocessor.tokens_length

    def tokenize_group(texts):
        token_ids = _tokenizer_of_this_graph(tokenizer)(texts)
        flat = tf.cast(token_ids.flat_values, tf.int32)
        return _split_into_chunks(flat, tokens_length)

    return (
        documents.batch(DOCUMENTS_PER_GROUP)
        .map(tokenize_group, num_parallel_calls=num_parallel_calls)
        .unbatch()
        .filter(lambda chunk: tf.size(chunk) > 0)
    )


def _corrupted(chunks, preprocessor, seed, num_parallel_calls):
    """Each chunk span-corrupted with its own seed, folded statelessly
    from `(seed, chunk index)`."""
    vocabulary_size = preprocessor.vocabulary_size
    eos_id = preprocessor.eos_token_id
    base_seed = tf.constant([seed, 0], dtype=tf.int64)

    def corrupt(index, chunk):
        chunk_seed = tf.random.experimental.stateless_fold_in(base_seed, index)
        return span_corruption(
            chunk,
            vocabulary_size,
            noise_density=preprocessor.noise_density,
            mean_noise_span_length=preprocessor.mean_noise_span_length,
            seed=chunk_seed,
            eos_id=eos_id,
        )

    return chunks.enumerate().map(
        corrupt, num_parallel_calls=num_parallel_calls
    )


def _checked_preprocessor(tokenizer, inputs_length, noise_density, mean_span):
    preprocessor = as_preprocessor(
        tokenizer,
        inputs_length=inputs_length,
        noise_density=noise_density,
        mean_noise_span_length=mean_span,
    )
    preprocessor.check_sentinels()
    return preprocessor


def pretraining_dataset(
    source,
    tokenizer,
    batch_size,
    inputs_length=None,
    noise_density=None,
    mean_noise_span_length=None,
    seed=0,
    split="train",
    shuffle_buffer=10_000,
    repeat=True,
    num_parallel_calls=tf.data.AUTOTUNE,
    stats=None,
):
    """Batched T5 span-corruption examples for `keras.Model.fit`.

    Builds `span_corruption_examples` (seqio's recipe: 128-document groups
    concatenated without separator, cut into `tokens_length` chunks, each
    group's tail a shorter chunk; noise masks seeded per chunk from
    `(seed, chunk index)`), pads `inputs` to `inputs_length` and `targets`
    to `targets_length` (from `span_corruption_lengths`) and batches with
    `drop_remainder=True`, so every batch has static shapes.

    Each element is keras-hub's `(x, y, sample_weight)`, as the
    preprocessor's `model_batch` builds it (pad id 0 in T5's vocabulary):
    - `x["encoder_token_ids"]`: int32 `[batch_size, inputs_length]`.
    - `x["encoder_padding_mask"]`: bool, `encoder_token_ids != pad`.
    - `x["decoder_token_ids"]`: int32 `[batch_size, targets_length]`,
      `[pad] + targets[:-1]` (T5's decoder start id is the pad id).
    - `x["decoder_padding_mask"]`: bool, `targets != pad`.
    - `y`: int32 `[batch_size, targets_length]`, the targets.
    - `sample_weight`: float32, `targets != pad`.

    Empty or whitespace-only documents are skipped; pass a `DocumentStats`
    as `stats` to count them (the same object is also attached to the
    returned dataset as `dataset.document_stats`, and the preprocessor as
    `dataset.preprocessor`, which `SpacTorT5.fit` checks against its own).

    Args:
        source: `"builtin:python-docs"`, `"tfds:c4/en"`, an `hf:` spec
            (e.g. `"hf:allenai/c4/en/c4-train.*.json.gz"`, whose shard
            order `seed` shuffles), a path, glob, directory or list of
            `.jsonl(.gz)`/`.txt` files, or a dataset of scalar strings.
            See `keras_spactor.data.text_dataset`.
        tokenizer: a `keras_spactor.models.SpacTorT5Preprocessor` (e.g.
            a model's `preprocessor`: its ids and lengths), or a
            `keras_hub.models.T5Tokenizer` ending with T5's sentinels
            (`<extra_id_0>` = `vocabulary_size() - 1`), from which one is
            built with the lengths below; a `ValueError` if it has fewer
            sentinels than an example has noise spans.
        batch_size: int.
        inputs_length: int >= 2 (default 512). Encoder length, EOS
            included. `None` with a preprocessor: its own; another value
            than its own is an error.
        noise_density: float in (0, 1) (default 0.15). Fraction of noise
            tokens.
        mean_noise_span_length: float >= 1 (default 3.0).
        seed: int. Same seed and data give the same batches, on every
            backend.
        split: `"train"` or `"validation"` (builtin, TFDS and directory
            sources).
        shuffle_buffer: int or `None`; documents and examples are shuffled
            (seeded) with this buffer. `None` or 0 keeps the order.
        repeat: bool. Repeat the source forever (for step-based training).
        num_parallel_calls: parallelism of the maps (`tf.data.AUTOTUNE`).
        stats: optional `DocumentStats`.

    Returns:
        A `tf.data.Dataset` of `(x, y, sample_weight)`.

    Raises:
        ValueError: for invalid lengths or noise parameters, a vocabulary
            without T5's sentinels, or a bad JSONL line.
        FileNotFoundError: for a missing file.

    Example:
    ```python
    tokenizer = keras_spactor.data.default_vocabulary()
    stats = keras_spactor.data.DocumentStats()
    ds = pretraining_dataset(
        "builtin:python-docs", tokenizer, batch_size=8, inputs_length=128,
        stats=stats,
    )
    x, y, sample_weight = next(iter(ds))
    # With a model's own ids and lengths:
    ds = pretraining_dataset("builtin:python-docs", model.preprocessor, 8)
    ```
    """
    if int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be >= 1. Received: {batch_size}")
    preprocessor = _checked_preprocessor(
        tokenizer, inputs_length, noise_density, mean_noise_span_length
    )
    pad_id = preprocessor.pad_token_id
    stats = stats if stats is not None else DocumentStats()
    examples = span_corruption_examples(
        source,
        preprocessor,
        seed=seed,
        split=split,
        shuffle_buffer=shuffle_buffer,
        repeat=repeat,
        num_parallel_calls=num_parallel_calls,
        stats=stats,
    )
    padded = examples.map(
        lambda ex: {
            "inputs": _pad_to(ex["inputs"], preprocessor.inputs_length, pad_id),
            "targets": _pad_to(
                ex["targets"], preprocessor.targets_length, pad_id
            ),
        },
        num_parallel_calls=num_parallel_calls,
    )
    ds = (
        padded.batch(batch_size, drop_remainder=True)
        .map(
            lambda rows: preprocessor.model_batch(
                rows["inputs"], rows["targets"]
            ),
            num_parallel_calls=num_parallel_calls,
        )
        .prefetch(tf.data.AUTOTUNE)
    )
    ds.document_stats = stats
    ds.preprocessor = preprocessor
    return ds
