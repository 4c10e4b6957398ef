"""Text sources: JSONL(.gz) and plain-text files, TFDS, the builtin corpus.

A source is given as a spec:

- `"builtin:python-docs"`: the embedded corpus (see `builtin_corpus.py`).
- `"tfds:<name>"`, e.g. `"tfds:c4/en"`: a TensorFlow Datasets dataset read
  with `tfds.load(name, split=split)`; documents are its `"text"` feature.
- `"hf:OWNER/NAME[@REVISION]/PATTERN[?field=FIELD]"`, e.g.
  `"hf:allenai/c4/en/c4-train.*.json.gz"`: shards of a Hugging Face Hub
  dataset, downloaded one at a time (see `hub_source.py`).
- a file path, a glob, a directory, or a list of those (as a Python list
  or one comma-separated string). `.jsonl`, `.jsonl.gz`, `.json.gz`: one
  JSON object per line with a `"text"` field. `.txt`, `.txt.gz`: one
  document per line. For a directory, the files whose name contains
  `split` (e.g. `docs.train.jsonl.gz`) are read. Paths may be `gs://`
  URLs (or any other `tf.io.gfile` file system), globs and folders
  included.
"""

import gzip
import os

import tensorflow as tf

from keras_spactor import file_paths
from keras_spactor.data.builtin_corpus import builtin_corpus_documents
from keras_spactor.data.document_lines import documents_of_lines
from keras_spactor.data.document_lines import parse_jsonl_line

_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz")
_TEXT_SUFFIXES = (".txt", ".txt.gz")
# Files up to this total size are checked line by line when the dataset is
# built, so that a bad line fails early with a plain Python error.
_VALIDATE_MAX_BYTES = 256 * 2**20
# Empty when only whitespace (including Unicode separators) remains.
_BLANK_PATTERN = r"[\s\p{Z}]*"


class DocumentStats:
    """Counters of the documents a text source read and skipped.

    The counters are `tf.Variable`s updated by the `tf.data` pipeline as it
    runs, so they count what has been read so far (across repetitions when
    the dataset repeats).

    Example:
    ```python
    stats = DocumentStats()
    ds = text_dataset("docs.jsonl.gz", stats=stats)
    for _ in ds:
        pass
    print(stats.skipped_empty, stats.documents)
    ```
    """

    def __init__(self):
        with tf.init_scope():
            self._read = tf.Variable(0, dtype=tf.int64, trainable=False)
            self._skipped = tf.Variable(0, dtype=tf.int64, trainable=False)

    @property
    def documents(self):
        """Number of documents read, skipped ones included."""
        return int(self._read.numpy())

    @property
    def skipped_empty(self):
        """Number of empty or whitespace-only documents skipped."""
        return int(self._skipped.numpy())

    def count(self, text):
        """Counts one document; returns `True` if it should be kept."""
        blank = tf.strings.regex_full_match(text, _BLANK_PATTERN)
        with tf.control_dependencies(
            [
                self._read.assign_add(1),
                self._skipped.assign_add(tf.cast(blank, tf.int64)),
            ]
        ):
            return tf.logical_not(blank)

    def __repr__(self):
        return (
            f"DocumentStats(documents={self.documents}, "
            f"skipped_empty={self.skipped_empty})"
        )


def _has_suffix(path, suffixes):
    return path.lower().endswith(suffixes)


def _kind(source):
    """`"builtin"`, `"tfds"`, `"hf"` or `"files"`; only files combine."""
    if not isinstance(source, str):
        return "files"
    parts = [part.strip() for part in source.split(",")]
    for kind in ("builtin", "tfds", "hf"):
        if any(part.startswith(f"{kind}:") for part in parts):
            if len(parts) > 1:
                raise ValueError(
                    f"{source!r}: a `{kind}:` source cannot be listed with "
                    "others; only files, globs and directories combine."
                )
            return kind
    return "files"


def _file_specs(source):
    """The paths, globs and directories of a file source, as a list."""
    if not isinstance(source, (str, os.PathLike)):
        return [os.fspath(spec) for spec in source]
    source = os.fspath(source)
    # A comma-separated list, unless the whole string names a file.
    if "," not in source or _names_a_file(source):
        return [source]
    return [spec.strip() for spec in source.split(",") if spec.strip()]


def _names_a_file(path):
    try:
        return file_paths.exists(path)
    except OSError:  # e.g. "a.jsonl,gs://b/c.jsonl" read as one URL
        return False


def resolve_files(source, split="train"):
    """Expands a path, glob, directory or list of them into file paths.

    Args:
        source: a path, glob or directory, a list of those, or one string
            of them separated by commas (`"a.jsonl,more/*.txt"`).
        split: the split whose files a directory contributes.

    Returns:
        A list of file paths, in the order given (globs sorted).

    Raises:
        FileNotFoundError: naming the path or pattern that matched nothing.
        ValueError: for a file of an unknown format.

    Example:
    ```python
    files = resolve_files("docs/a.jsonl.gz,extra/*.txt")
    ```
    """
    specs = _file_specs(source)
    files = []
    for spec in specs:
        is_folder = file_paths.isdir(spec)
        if is_folder:
            matched = [
                p
                for p in file_paths.glob(file_paths.join(spec, f"*{split}*"))
                if _has_suffix(p, _JSONL_SUFFIXES + _TEXT_SUFFIXES)
            ]
        elif file_paths.has_magic(spec):
            matched = file_paths.glob(spec)
        else:
            matched = [spec] if file_paths.isfile(spec) else []
        if not matched:
            raise FileNotFoundError(
                f"Text source {spec!r} matched no file"
                + (f" for split {split!r}" if is_folder else "")
                + "."
            )
        files.extend(matched)
    for path in files:
        if not _has_suffix(path, _JSONL_SUFFIXES + _TEXT_SUFFIXES):
            raise ValueError(
                f"Unknown text file format: {path!r}. Expected one of "
                f"{_JSONL_SUFFIXES + _TEXT_SUFFIXES}."
            )
    return files


def _open_lines(path):
    with file_paths.open_file(path, "rb") as raw:
        file = (
            gzip.GzipFile(fileobj=raw) if _has_suffix(path, (".gz",)) else raw
        )
        for line_number, line in enumerate(file, start=1):
            # Invalid UTF-8 is replaced, never fatal.
            yield line_number, line.decode("utf-8", errors="replace")


def iter_file_documents(files):
    """Yields the documents of JSONL(.gz) and text files as Python strings.

    Raises:
        ValueError: naming the file and line of a JSONL line that is not
            JSON or has no `"text"` string.
    """
    for path in files:
        is_jsonl = _has_suffix(path, _JSONL_SUFFIXES)
        for line_number, line in _open_lines(path):
            if is_jsonl:
                if not line.strip():
                    yield ""  # A blank line: an empty document, counted.
                    continue
                yield parse_jsonl_line(path, line_number, line)
            else:
                yield line.rstrip("\r\n")


def file_documents_dataset(files):
    """The documents of text files, one per line, in file order.

    The same documents as `iter_file_documents`, read by `tf.data` itself
    (`TextLineDataset`) rather than a Python generator, so that an iterator
    over them can be checkpointed: a resumed run continues from the saved
    position instead of reading everything before it again.

    Args:
        files: a list of `.jsonl(.gz)`, `.json.gz` or `.txt(.gz)` paths.

    Returns:
        A dataset of scalar `tf.string` documents. A JSONL line that is not
        JSON or has no `"text"` string fails the iteration with an error
        naming the file and line.
    """
    is_jsonl = [_has_suffix(path, _JSONL_SUFFIXES) for path in files]
    compression = ["GZIP" if _has_suffix(p, (".gz",)) else "" for p in files]

    def lines_of(path, jsonl, compression):
        lines = tf.data.TextLineDataset(path, compression_type=compression)
        return lines.enumerate(start=1).map(
            lambda number, line: (path, jsonl, number, line)
        )

    def parse(paths, jsonl, numbers, lines):
        documents = tf.py_function(
            documents_of_lines, [paths, jsonl, numbers, lines], tf.string
        )
        return tf.ensure_shape(documents, [None])

    # Lines are parsed in batches: one Python call per 256 lines.
    return (
        tf.data.Dataset.from_tensor_slices((files, is_jsonl, compression))
        .flat_map(lines_of)
        .batch(256)
        .map(parse)
        .unbatch()
    )


def _validate_files(files, validate):
    if validate is None:
        size = sum(file_paths.getsize(p) for p in files)
        validate = size <= _VALIDATE_MAX_BYTES
    if validate:
        for _ in iter_file_documents(files):
            pass


def iter_documents(source, split="train"):
    """Yields the raw documents of a source spec as Python strings.

    Unlike `text_dataset`, nothing is skipped. Used to train vocabularies.

    Args:
        source: a source spec (see `text_dataset`).
        split: split name for `builtin:`, `tfds:` and directory sources.
    """
    kind = _kind(source)
    if kind == "builtin":
        yield from _builtin_documents(source, split)
    elif kind == "tfds":
        for text in _tfds_dataset(source, split).as_numpy_iterator():
            yield text.decode("utf-8", errors="replace")
    elif kind == "hf":
        for text in _hub_source(source).documents(split).as_numpy_iterator():
            yield text.decode("utf-8")
    else:
        yield from iter_file_documents(resolve_files(source, split))


def _hub_source(source):
    from keras_spactor.data.hub_source import HubSource

    return HubSource(source)


def _builtin_name(source):
    name = source[len("builtin:") :]
    if name != "python-docs":
        raise ValueError(
            f"Unknown builtin corpus {name!r}. Available: 'python-docs'."
        )
    return name


def _builtin_documents(source, split):
    _builtin_name(source)
    return builtin_corpus_documents(split)


def _tfds_dataset(source, split):
    import tensorflow_datasets as tfds

    name = source[len("tfds:") :]
    ds = tfds.load(name, split=split, shuffle_files=False)
    if "text" not in ds.element_spec:
        raise ValueError(
            f"TFDS dataset {name!r} has no 'text' feature. "
            f"Features: {sorted(ds.element_spec)}"
        )
    ds = ds.map(lambda x: x["text"], num_parallel_calls=tf.data.AUTOTUNE)
    # Invalid UTF-8 is replaced, never fatal.
    return ds.map(
        lambda text: tf.strings.unicode_transcode(
            text, "UTF-8", "UTF-8", errors="replace"
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def has_splits(source):
    """Whether `source` has splits of its own (`"train"`, `"validation"`).

    A builtin corpus, a TFDS dataset, an `hf:` pattern (whose `train`
    becomes `validation`) and folders (their files named after the split)
    do; files and globs are read whatever the split.

    Args:
        source: a source spec (see `text_dataset`).

    Returns:
        bool.

    Example:
    ```python
    has_splits("builtin:python-docs")  # True
    has_splits("corpus/*.jsonl.gz")  # False
    ```
    """
    if _kind(source) != "files":
        return True
    return all(
        not file_paths.has_magic(spec) and file_paths.isdir(spec)
        for spec in _file_specs(source)
    )


def check_source(source, split="train"):
    """Checks a source spec cheaply, before any long work starts.

    `builtin:` names and files are checked (every file, glob and directory
    must match a file of a known format); `hf:` specs are listed on the Hub
    (at least one shard of a known format); `tfds:` specs are left to TFDS,
    which may need the network to tell.

    Args:
        source: a source spec (see `text_dataset`).
        split: the split that will be read.

    Raises:
        FileNotFoundError: naming the path or pattern that matched nothing.
        ValueError: for an unknown builtin corpus or file format, or a
            `builtin:`, `tfds:` or `hf:` source in a list.
        ImportError: for an `hf:` source without `huggingface_hub`, naming
            the extra to install.

    Example:
    ```python
    check_source("corpus/a.jsonl,corpus/b.jsonl")  # raises if one is absent
    ```
    """
    kind = _kind(source)
    if kind == "builtin":
        _builtin_name(source)
    elif kind == "hf":
        _hub_source(source).shards(split)
    elif kind == "files":
        resolve_files(source, split)


def text_dataset(source, split="train", stats=None, validate=None, seed=None):
    """A `tf.data.Dataset` of the documents of a text source.

    Documents that are empty or whitespace only are skipped and counted in
    `stats`. Invalid UTF-8 bytes are replaced by U+FFFD.

    Args:
        source: a source spec: `"builtin:python-docs"`, `"tfds:<name>"`
            (e.g. `"tfds:c4/en"`), or a path, glob or directory of
            `.jsonl`, `.jsonl.gz`, `.json.gz`, `.txt` or `.txt.gz` files,
            or a list of those (a Python list or a comma-separated
            string).
        split: `"train"` or `"validation"` for builtin, TFDS and directory
            sources; ignored for explicit files.
        stats: optional `DocumentStats` to count read and skipped documents.
        validate: whether to read JSONL files once when the dataset is
            built, so that a bad line raises a `ValueError` naming the file
            and line right away. `None` (default) validates when the files
            total at most 256 MiB. A bad line found later, while iterating,
            still names the file and line in the raised error.
        seed: int or `None`. Shuffles the shard order of an `hf:` source;
            `None` reads shards in name order. Other sources keep their
            order.

    Returns:
        A dataset of scalar `tf.string` documents.

    Raises:
        FileNotFoundError: when a path or glob matches no file.
        ValueError: for an unknown spec or file format, or a bad JSONL line
            (when validated).

    Example:
    ```python
    stats = DocumentStats()
    ds = text_dataset("builtin:python-docs", split="validation", stats=stats)
    ```
    """
    stats = stats if stats is not None else DocumentStats()
    kind = _kind(source)
    if kind == "builtin":
        documents = _builtin_documents(source, split)
        ds = tf.data.Dataset.from_tensor_slices(
            tf.constant(documents or [""], dtype=tf.string)
        ).take(len(documents))
    elif kind == "tfds":
        ds = _tfds_dataset(source, split)
    elif kind == "hf":
        ds = _hub_source(source).documents(split, seed=seed)
    else:
        files = resolve_files(source, split)
        _validate_files(files, validate)
        ds = file_documents_dataset(files)
    return ds.filter(stats.count)
