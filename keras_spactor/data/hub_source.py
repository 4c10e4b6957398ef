"""Text shards of a Hugging Face Hub dataset repository, read shard by shard.

A Hub source is given as a spec:

    hf:OWNER/NAME[@REVISION]/PATTERN[?field=FIELD]

- `OWNER/NAME`: the dataset repository, e.g. `allenai/c4`.
- `@REVISION`: optional branch, tag or commit (default `main`); a
  revision with a slash is written URL-encoded
  (`@refs%2Fconvert%2Fparquet`). It is resolved to its commit once, when
  the source is listed, and every shard is downloaded from that commit.
- `PATTERN`: the shards, a path in the repository whose segments may hold
  `*`, `?` and `[...]` (a `*` never crosses a `/`), e.g.
  `en/c4-train.*.json.gz` or `sample/10BT/*.parquet`. JSON Lines
  (`.jsonl`, `.json`, either gzipped) and parquet shards are read, plus
  plain text (`.txt`, `.txt.gz`, one document per line).
- `?field=FIELD`: the JSON field or parquet column holding the text
  (default `text`).

Examples: `hf:allenai/c4/en/c4-train.*.json.gz` (C4's English training
split), `hf:HuggingFaceFW/fineweb-edu/sample/10BT/*.parquet`.

Validation: for `split="validation"`, every `train` in the pattern's last
segment becomes `validation` (`en/c4-train.*.json.gz` reads C4's own
`en/c4-validation.*.json.gz`); a repository without such shards (e.g.
FineWeb-Edu) raises a `FileNotFoundError` that says so.

Reading: the shards are ordered by name, or, given a seed, shuffled by it
(the same order for every run, every process and every pass over the
data with that seed: a new order per pass would come from a random state
outside the iterator, which its checkpoint cannot restore; a T5-base run
reads about 1/20 of C4, so it never starts a second pass). Each shard is
downloaded to a local cache folder when the reader reaches it (the next
one downloads in the background meanwhile; parquet and renamed fields are
rewritten to JSON lines) and read by `tf.data.TextLineDataset`, so that an
iterator over the documents can be checkpointed: a restored iterator
downloads only the shard it stands in. The cache holds at most two shards
(the current one and the next; see `HubShardCache` for the exact bound)
and deletes each shard once read.

Settings from the environment: `HF_ENDPOINT` (the Hub's URL), `HF_TOKEN`
(gated datasets), `KERAS_SPACTOR_HUB_CACHE` (the cache folder, default
`~/.cache/keras_spactor/hub`), `KERAS_SPACTOR_HUB_RETRIES` (attempts per
shard, default 8) and `KERAS_SPACTOR_HUB_BACKOFF` (first wait between
attempts in seconds, default 1, doubling up to 60).
"""

import fnmatch
import os
import re
from urllib.parse import parse_qs
from urllib.parse import unquote

import tensorflow as tf

from keras_spactor.data.document_lines import documents_of_lines
from keras_spactor.data.hub_shard_cache import HubShardCache

INSTALL_LINE = 'an `hf:` source needs: pip install "keras-spactor[hub]"'
_JSONL = (".jsonl", ".jsonl.gz", ".json", ".json.gz")
_TEXT = (".txt", ".txt.gz")
_PARQUET = (".parquet",)
_SPEC = re.compile(
    r"hf:(?P<repo>[^/@?]+/[^/@?]+)(?:@(?P<revision>[^/?]+))?"
    r"/(?P<pattern>[^?]+)(?:\?(?P<query>.*))?"
)


def is_hub_spec(source):
    """Whether `source` is an `hf:` spec."""
    return isinstance(source, str) and source.strip().startswith("hf:")


def _require_packages(parquet=False):
    try:
        import huggingface_hub  # noqa: F401

        if parquet:
            import pyarrow  # noqa: F401
    except ImportError:
        raise ImportError(INSTALL_LINE) from None


def _hub_endpoint():
    """`HF_ENDPOINT` as set now (huggingface_hub reads it at import)."""
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")


def _segments_match(pattern, path):
    wanted, parts = pattern.split("/"), path.split("/")
    return len(wanted) == len(parts) and all(
        fnmatch.fnmatchcase(part, want) for part, want in zip(parts, wanted)
    )


class HubSource:
    """The text shards an `hf:` spec names, as a `tf.data` stream.

    Args:
        spec: str. `hf:OWNER/NAME[@REVISION]/PATTERN[?field=FIELD]` (see
            the module docstring).
        cache_dir: str or `None`. Where shards are downloaded to (a folder
            per process is made inside); default `$KERAS_SPACTOR_HUB_CACHE`
            or `~/.cache/keras_spactor/hub`.
        retries: int or `None`. Download attempts per shard; default
            `$KERAS_SPACTOR_HUB_RETRIES` or 8.
        backoff_seconds: float or `None`. First wait between attempts;
            default `$KERAS_SPACTOR_HUB_BACKOFF` or 1.

    Raises:
        ValueError: for a spec that does not parse.
        ImportError: naming the extra to install, without
            `huggingface_hub` (or `pyarrow`, for parquet shards).

    Example:
    ```python
    source = HubSource("hf:allenai/c4/en/c4-train.*.json.gz")
    documents = source.documents(split="train", seed=0)
    ```
    """

    def __init__(
        self, spec, cache_dir=None, retries=None, backoff_seconds=None
    ):
        spec = spec.strip()
        match = _SPEC.fullmatch(spec)
        if not match:
            raise ValueError(
                f"{spec!r}: an `hf:` source is "
                "hf:OWNER/NAME[@REVISION]/PATTERN[?field=FIELD], e.g. "
                "hf:allenai/c4/en/c4-train.*.json.gz"
            )
        self.spec = spec
        self.repo_id = match["repo"]
        self.revision = unquote(match["revision"] or "main")
        self.pattern = match["pattern"].strip("/")
        query = parse_qs(match["query"] or "", keep_blank_values=True)
        unknown = sorted(set(query) - {"field"})
        if unknown or any(len(v) != 1 or not v[0] for v in query.values()):
            raise ValueError(
                f"{spec!r}: the only option is one `?field=NAME` (got "
                f"{match['query']!r})"
            )
        self.text_field = query.get("field", ["text"])[0]
        self.cache_dir = cache_dir
        self.retries = int(
            retries or os.environ.get("KERAS_SPACTOR_HUB_RETRIES", 8)
        )
        self.backoff_seconds = float(
            backoff_seconds
            if backoff_seconds is not None
            else os.environ.get("KERAS_SPACTOR_HUB_BACKOFF", 1.0)
        )
        _require_packages(parquet=self.pattern.lower().endswith(_PARQUET))
        self.commit = None

    def split_pattern(self, split):
        """The shard pattern of `split` (see the validation rule)."""
        if split in (None, "train"):
            return self.pattern
        if split != "validation":
            raise ValueError(
                f"{self.spec}: unknown split {split!r} (train or validation)"
            )
        head, _, name = self.pattern.rpartition("/")
        if "train" not in name:
            raise FileNotFoundError(
                f"{self.spec}: no validation shards (the pattern's file name "
                "has no `train` to replace by `validation`)"
            )
        name = name.replace("train", "validation")
        return f"{head}/{name}" if head else name

    def shards(self, split="train"):
        """The repository paths of `split`'s shards, sorted.

        Resolves the revision to its commit (kept in `self.commit`) and
        lists the folder the pattern lies in (the Hub client retries the
        listing on 429 and 5xx).

        Raises:
            FileNotFoundError: naming the spec, for a repository, revision
                or pattern that gives no shard.
            ValueError: for shards of a format that cannot be read.
        """
        from huggingface_hub import HfApi

        pattern = self.split_pattern(split)
        segments = pattern.split("/")
        fixed = []
        for segment in segments[:-1]:
            if any(c in segment for c in "*?["):
                break
            fixed.append(segment)
        api = HfApi(endpoint=_hub_endpoint())
        try:
            # Only the commit: the full info lists every file of the repo.
            info = api.dataset_info(
                self.repo_id, revision=self.revision, expand=["sha"]
            )
            self.commit = info.sha or self.revision
            entries = api.list_repo_tree(
                self.repo_id,
                path_in_repo="/".join(fixed) or None,
                recursive=len(fixed) < len(segments) - 1,
                revision=self.commit,
                repo_type="dataset",
            )
            paths = sorted(
                entry.path
                for entry in entries
                if getattr(entry, "size", None) is not None
                and _segments_match(pattern, entry.path)
            )
        except Exception as error:  # the client raises many kinds
            if isinstance(error, (ImportError, KeyboardInterrupt)):
                raise
            reason = (str(error).strip().splitlines() or [""])[0][:200]
            raise FileNotFoundError(
                f"{self.spec}: cannot list the dataset repository "
                f"{self.repo_id}@{self.revision} on {_hub_endpoint()} "
                f"({type(error).__name__}: {reason})"
            ) from None
        if not paths:
            what = "validation " if split == "validation" else ""
            raise FileNotFoundError(
                f"{self.spec}: no {what}shard matches {pattern!r} in "
                f"{self.repo_id}@{self.revision}"
            )
        for path in paths:
            if not path.lower().endswith(_JSONL + _TEXT + _PARQUET):
                raise ValueError(
                    f"{self.spec}: cannot read {path!r}; shards must be "
                    "JSON lines (.jsonl, .json, gzipped or not), parquet "
                    "or .txt(.gz)"
                )
        if any(p.lower().endswith(_PARQUET) for p in paths):
            _require_packages(parquet=True)
        return paths

    def display_name(self, shard):
        """How errors name a shard: `hf:OWNER/NAME@REVISION/PATH`."""
        return f"hf:{self.repo_id}@{self.revision}/{shard}"

    def documents(self, split="train", seed=None):
        """A `tf.data.Dataset` of the shards' documents (scalar strings).

        Args:
            split: `"train"` or `"validation"`.
            seed: int or `None`. `None` reads the shards in name order; a
                seed shuffles their order (the same order on every pass).
                Documents within a shard keep their order.

        Returns:
            The documents, empty ones included (`text_dataset` counts and
            skips those). A shard that cannot be downloaded after the
            retries, or a bad line, fails the iteration with an error
            whose message names the shard.
        """
        paths = self.shards(split)
        cache = HubShardCache(
            self.repo_id,
            self.commit,
            _hub_endpoint(),
            text_field=self.text_field,
            cache_dir=self.cache_dir,
            retries=self.retries,
            backoff_seconds=self.backoff_seconds,
            display_name=self.display_name,
        )
        self.cache = cache
        names = tf.data.Dataset.from_tensor_slices(tf.constant(paths))
        if seed is not None:
            names = names.shuffle(
                len(paths), seed=seed, reshuffle_each_iteration=False
            )
        # One element per pass: the order, so that each shard is handed
        # with the one after it, which downloads while it is read.
        orders = names.batch(len(paths))

        def with_next(order):
            following = tf.concat([order[1:], [""]], axis=0)
            return tf.data.Dataset.from_tensor_slices((order, following))

        display_prefix = f"hf:{self.repo_id}@{self.revision}/"

        def lines_of(shard, next_shard):
            # On restore, flat_map calls this again for the saved shard
            # only: a resume downloads that shard, not those before it.
            local, compression = tf.py_function(
                cache.fetch, [shard, next_shard], [tf.string, tf.string]
            )
            local.set_shape([])
            compression.set_shape([])
            lines = tf.data.TextLineDataset(local, compression_type=compression)
            name = display_prefix + shard
            is_jsonl = tf.logical_not(
                tf.strings.regex_full_match(
                    tf.strings.lower(shard), r".*\.txt(\.gz)?"
                )
            )
            return lines.enumerate(start=1).map(
                lambda number, line: (name, is_jsonl, number, line)
            )

        def parse(names, is_jsonl, numbers, lines):
            documents = tf.py_function(
                documents_of_lines,
                [names, is_jsonl, numbers, lines],
                tf.string,
            )
            return tf.ensure_shape(documents, [None])

        return (
            orders.flat_map(with_next)
            .flat_map(lines_of)
            .batch(256)
            .map(parse)
            .unbatch()
        )
