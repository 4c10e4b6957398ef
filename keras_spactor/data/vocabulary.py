"""SentencePiece vocabularies with T5's conventions, plus a `<mask>` piece."""

import io
import os
import tempfile

from keras_spactor import file_paths

# T5's conventions, which `train_vocabulary` follows; a model built without
# a tokenizer assumes them.
PAD_ID = 0
EOS_ID = 1
NUM_SENTINELS = 100
MASK_TOKEN = "<mask>"
_DEFAULT_VOCABULARY_VERSION = 1


def sentinel_token(index):
    """The piece of sentinel `index`: `<extra_id_{index}>`."""
    return f"<extra_id_{index}>"


def _documents(documents_or_files):
    from keras_spactor.data.sources import iter_documents

    if isinstance(documents_or_files, (str, os.PathLike)):
        return iter_documents(os.fspath(documents_or_files))
    items = list(documents_or_files)
    if items and all(os.path.isfile(os.fspath(i)) for i in items):
        return iter_documents([os.fspath(i) for i in items])
    return iter(items)


def train_vocabulary(
    documents_or_files,
    output_prefix,
    vocabulary_size=32100,
    num_sentinels=NUM_SENTINELS,
    add_mask_token=True,
    character_coverage=0.9995,
    max_documents=1_000_000,
    seed=0,
):
    """Trains a SentencePiece unigram vocabulary with T5's conventions.

    Ids: `<pad>` = 0, `</s>` = 1 (EOS), `<unk>` = 2, no BOS; a `<mask>`
    piece for the generator (a user-defined piece, id 3); and
    `num_sentinels` sentinels at the end, in T5's order: `<extra_id_0>` =
    `vocabulary_size - 1`, ..., `<extra_id_99>` = `vocabulary_size - 100`.
    The model is trained with `vocabulary_size - num_sentinels` pieces and
    the sentinels are appended to its proto as user-defined pieces.

    The result loads with `keras_hub.models.T5Tokenizer(proto=model_file)`.

    Args:
        documents_or_files: an iterable of document strings, or a source
            spec (`"builtin:python-docs"`, a path, glob or list of `.jsonl`,
            `.jsonl.gz` or `.txt` files; see `sources.text_dataset`).
        output_prefix: writes `<output_prefix>.model` and `.vocab`.
        vocabulary_size: int. Total size, sentinels included.
        num_sentinels: int. Number of `<extra_id_N>` pieces.
        add_mask_token: bool. Whether to add the `<mask>` piece.
        character_coverage: float. SentencePiece's character coverage.
        max_documents: int. At most this many documents are used.
        seed: int. SentencePiece's random seed, for reproducible training.

    Returns:
        A dict with `"model_file"`, `"vocabulary_size"`, `"mask_token_id"`
        (`None` without a mask piece) and `"sentinel_ids"` (the id of
        `<extra_id_0>`, `<extra_id_1>`, ...).

    Example:
    ```python
    info = train_vocabulary("builtin:python-docs", "/tmp/vocab", 2000)
    tokenizer = keras_hub.models.T5Tokenizer(proto=info["model_file"])
    ```
    """
    num_pieces = vocabulary_size - num_sentinels
    if num_pieces < 8:
        raise ValueError(
            f"`vocabulary_size` ({vocabulary_size}) leaves too few pieces "
            f"besides {num_sentinels} sentinels."
        )
    documents = (
        d
        for i, d in enumerate(_documents(documents_or_files))
        if i < max_documents and d.strip()
    )
    proto = _train_sentencepiece(
        documents,
        num_pieces,
        user_defined_symbols=[MASK_TOKEN] if add_mask_token else [],
        character_coverage=character_coverage,
        seed=seed,
    )
    _append_sentinels(proto, num_sentinels)
    model_file = _write_vocabulary(proto, output_prefix)
    pieces = [p.piece for p in proto.pieces]
    return {
        "model_file": model_file,
        "vocabulary_size": len(pieces),
        "mask_token_id": (pieces.index(MASK_TOKEN) if add_mask_token else None),
        "sentinel_ids": [len(pieces) - 1 - i for i in range(num_sentinels)],
    }


def _train_sentencepiece(
    documents, num_pieces, user_defined_symbols, character_coverage, seed
):
    """A SentencePiece unigram model of `documents` with T5's special
    ids (`<pad>` 0, `</s>` 1, `<unk>` 2, no BOS), as a `ModelProto`."""
    # Not keras-hub's `compute_sentence_piece_proto`: it reads a `tf.data`
    # dataset (TensorFlow), and T5's sentinels go into the proto after.
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=documents,
        model_writer=model,
        vocab_size=num_pieces,
        model_type="unigram",
        pad_id=PAD_ID,
        eos_id=EOS_ID,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        user_defined_symbols=user_defined_symbols,
        character_coverage=character_coverage,
        # Documents are long; SentencePiece's default cuts at 4192 bytes.
        max_sentence_length=1 << 16,
        num_threads=os.cpu_count() or 1,
        minloglevel=2,
    )
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model.getvalue())
    return proto


def _append_sentinels(proto, num_sentinels):
    """Adds T5's sentinels to `proto` as user-defined pieces, counting down
    from the last id: `<extra_id_0>` is the last piece."""
    from sentencepiece import sentencepiece_model_pb2

    user_defined = sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED
    for index in reversed(range(num_sentinels)):
        piece = proto.pieces.add()
        piece.piece = sentinel_token(index)
        piece.score = 0.0
        piece.type = user_defined


def _write_vocabulary(proto, output_prefix):
    """Writes `<output_prefix>.model` (the proto) and `.vocab` (a piece
    and its score a line); returns the `.model` path."""
    model_file = f"{output_prefix}.model"
    directory = os.path.dirname(os.path.abspath(model_file))
    os.makedirs(directory, exist_ok=True)
    with open(model_file, "wb") as file:
        file.write(proto.SerializeToString())
    with open(f"{output_prefix}.vocab", "w", encoding="utf-8") as file:
        for piece in proto.pieces:
            file.write(f"{piece.piece}\t{piece.score}\n")
    return model_file


def validate_sentinels(tokenizer, num_sentinels=NUM_SENTINELS):
    """Checks that a tokenizer ends with T5's sentinels, in T5's order.

    Raises:
        ValueError: unless the last `num_sentinels` pieces are
            `<extra_id_{num_sentinels - 1}>` ... `<extra_id_0>`, with
            `<extra_id_0>` = `vocabulary_size - 1`.
    """
    vocabulary = tokenizer.get_vocabulary()
    size = len(vocabulary)
    for index in range(num_sentinels):
        token_id = size - 1 - index
        found = vocabulary[token_id] if token_id >= 0 else None
        if found != sentinel_token(index):
            raise ValueError(
                f"The vocabulary must end with {num_sentinels} sentinels "
                f"<extra_id_0>..<extra_id_{num_sentinels - 1}> counting down "
                f"from the last id ({size - 1} = <extra_id_0>), as T5's does. "
                f"Id {token_id} should be {sentinel_token(index)!r} but is "
                f"{found!r}. Train one with "
                "`keras_spactor.data.train_vocabulary`."
            )


def count_sentinels(tokenizer):
    """How many sentinels end the vocabulary, in T5's order.

    Args:
        tokenizer: a `keras_hub.models.T5Tokenizer`.

    Returns:
        The `n` for which the last `n` pieces are `<extra_id_{n-1}>` ...
        `<extra_id_0>` (T5's vocabulary: 100).

    Raises:
        ValueError: if the last piece is not `<extra_id_0>`.

    Example:
    ```python
    count_sentinels(default_vocabulary())  # 100
    ```
    """
    vocabulary = tokenizer.get_vocabulary()
    count = 0
    while count < len(vocabulary) and vocabulary[-1 - count] == sentinel_token(
        count
    ):
        count += 1
    if count == 0:
        validate_sentinels(tokenizer)  # raises, saying what T5's look like
    return count


def mask_token_id(tokenizer):
    """The id that replaces masked tokens for the generator.

    A vocabulary trained by `train_vocabulary` has its own `<mask>` piece,
    whose id is returned. T5's 32,100-piece vocabulary has none; its models
    pad the embedding to 32,128 rows, so the first padded row,
    `vocabulary_size` (32100), is free and is returned. In general the
    tokenizer's `vocabulary_size()` is returned, which requires the model's
    embedding to have at least one row more than the tokenizer has pieces.

    Args:
        tokenizer: a `keras_hub.models.T5Tokenizer`.

    Returns:
        An int.
    """
    vocabulary = tokenizer.get_vocabulary()
    if MASK_TOKEN in vocabulary:
        return vocabulary.index(MASK_TOKEN)
    return len(vocabulary)


def default_cache_dir():
    """`$KERAS_SPACTOR_CACHE`, else `~/.cache/keras_spactor`."""
    return os.environ.get("KERAS_SPACTOR_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "keras_spactor"
    )


def default_vocabulary(cache_dir=None, vocabulary_size=2000):
    """A small vocabulary trained on `builtin:python-docs`, cached.

    Trained once (a few seconds) and then read from
    `<cache_dir>/python_docs_v1_<vocabulary_size>.model`.

    Args:
        cache_dir: directory of the cached model; defaults to
            `default_cache_dir()`.
        vocabulary_size: int. Total size, 100 sentinels included.

    Returns:
        A `keras_hub.models.T5Tokenizer`.

    Example:
    ```python
    tokenizer = default_vocabulary()
    mask_id = mask_token_id(tokenizer)
    ```
    """
    import keras_hub

    cache_dir = cache_dir or default_cache_dir()
    name = f"python_docs_v{_DEFAULT_VOCABULARY_VERSION}_{vocabulary_size}"
    model_file = os.path.join(cache_dir, f"{name}.model")
    if not os.path.exists(model_file):
        os.makedirs(cache_dir, exist_ok=True)
        # Train into a temporary name, then rename: no half-written cache.
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            info = train_vocabulary(
                "builtin:python-docs",
                os.path.join(tmp, name),
                vocabulary_size=vocabulary_size,
            )
            os.replace(info["model_file"], model_file)
    with open(model_file, "rb") as file:
        return keras_hub.models.T5Tokenizer(proto=file.read())


def load_vocabulary(spec=None):
    """A T5 tokenizer from a spec: the default, a file or a keras-hub preset.

    Args:
        spec: `None` or `"builtin:python-docs"` for `default_vocabulary()`;
            a SentencePiece `.model` file; or a keras-hub preset name or
            directory with a T5 tokenizer (e.g. `"t5_1.1_base"`). A
            `.model` file may be a `gs://` URL.

    Returns:
        A `keras_hub.models.T5Tokenizer`.

    Example:
    ```python
    tokenizer = load_vocabulary("t5_1.1_base")  # T5's 32,100 pieces
    ```
    """
    import keras_hub

    if spec is None or spec == "builtin:python-docs":
        return default_vocabulary()
    if file_paths.is_remote(spec) and spec.endswith(".model"):
        # keras-hub opens a proto path with `open`: read it here.
        if not file_paths.isfile(spec):
            raise FileNotFoundError(f"no vocabulary file at {spec}")
        with file_paths.open_file(spec, "rb") as file:
            return keras_hub.models.T5Tokenizer(proto=file.read())
    if os.path.isfile(spec):
        return keras_hub.models.T5Tokenizer(proto=spec)
    return keras_hub.models.T5Tokenizer.from_preset(spec)
