"""`builtin:python-docs`: a small English corpus every Python install has.

Built from `pydoc_data.topics` (the long help texts behind `help("FOR")`)
and the docstrings of a fixed list of standard-library modules, so that the
project runs offline on a fresh machine with no data download.
"""

import functools
import hashlib
import importlib
import inspect
import re

# Fixed and sorted: the corpus must not depend on what else is installed.
STDLIB_MODULES = (
    "abc",
    "argparse",
    "ast",
    "asyncio",
    "base64",
    "bisect",
    "calendar",
    "collections",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "enum",
    "fractions",
    "functools",
    "gzip",
    "heapq",
    "inspect",
    "io",
    "itertools",
    "json",
    "logging",
    "os",
    "pathlib",
    "pickle",
    "pprint",
    "random",
    "shutil",
    "statistics",
    "string",
    "subprocess",
    "tarfile",
    "textwrap",
    "threading",
    "typing",
    "unittest",
    "zipfile",
)
VALIDATION_PERCENT = 5
_MIN_WORDS = 250
_MAX_WORDS = 500


def _module_text(name):
    module = importlib.import_module(name)
    parts = [inspect.getdoc(module) or ""]
    for attr in sorted(vars(module)):
        if attr.startswith("_"):
            continue
        obj = getattr(module, attr)
        is_own = getattr(obj, "__module__", None) == name
        if is_own and (inspect.isclass(obj) or inspect.isfunction(obj)):
            doc = inspect.getdoc(obj)
            if doc:
                parts.append(f"{attr}: {doc}")
    return "\n\n".join(parts)


def _cut(text):
    """Cuts text into documents of a few hundred words, at paragraphs."""
    documents, current = [], []
    for paragraph in re.split(r"\n\s*\n", text):
        words = paragraph.split()
        while len(words) > _MAX_WORDS:
            documents.append(" ".join(current + words[:_MAX_WORDS]))
            current, words = [], words[_MAX_WORDS:]
        current.extend(words)
        if len(current) >= _MIN_WORDS:
            documents.append(" ".join(current))
            current = []
    if current:
        documents.append(" ".join(current))
    return documents


def _split_of(key):
    # A stable hash (not Python's salted `hash`) keeps splits fixed.
    digest = hashlib.md5(key.encode("utf-8")).hexdigest()
    is_validation = int(digest[:8], 16) % 100 < VALIDATION_PERCENT
    return "validation" if is_validation else "train"


@functools.lru_cache(maxsize=None)
def _all_documents():
    from pydoc_data.topics import topics

    sources = [(f"topic:{k}", topics[k]) for k in sorted(topics)]
    sources += [(f"module:{m}", _module_text(m)) for m in STDLIB_MODULES]
    documents = []
    for source_key, text in sources:
        for index, document in enumerate(_cut(text)):
            key = f"{source_key}:{index}"
            documents.append((key, _split_of(key), document))
    return tuple(documents)


def builtin_corpus_documents(split="train"):
    """Documents of the embedded `builtin:python-docs` corpus.

    The texts are `pydoc_data.topics.topics` (sorted by key) and the
    docstrings of `STDLIB_MODULES` and of their public classes and functions
    (sorted by name), with whitespace collapsed, cut at paragraph boundaries
    into documents of 250-500 words. A document goes to `"validation"` when
    the MD5 of its key (`"topic:<name>:<i>"` or `"module:<name>:<i>"`) falls
    in the first 5%, so the split is stable across runs and machines.

    Args:
        split: `"train"` or `"validation"`.

    Returns:
        A list of strings, in a fixed order.

    Example:
    >>> docs = builtin_corpus_documents("validation")
    >>> len(docs) > 0
    True
    """
    if split not in ("train", "validation"):
        raise ValueError(
            "`split` must be 'train' or 'validation' for the builtin corpus. "
            f"Received: split={split!r}"
        )
    return [doc for _, s, doc in _all_documents() if s == split]
