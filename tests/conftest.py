"""Shared fixtures of the data tests (all named `data_*`)."""

import os

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(REPO_ROOT, "..", "shared", "data")


@pytest.fixture(scope="session")
def data_tokenizer(tmp_path_factory):
    """The default 2,000-piece vocabulary, trained into a temporary cache."""
    from keras_spactor.data.vocabulary import default_vocabulary

    return default_vocabulary(cache_dir=str(tmp_path_factory.mktemp("vocab")))


@pytest.fixture(scope="session")
def data_shared_corpus():
    """`../shared/data/corpus/docs.train.jsonl.gz`, or a skip."""
    path = os.path.join(SHARED_DATA, "corpus", "docs.train.jsonl.gz")
    if not os.path.exists(path):
        pytest.skip(
            f"{os.path.normpath(path)} is absent: the shared corpus is only "
            "on development and CI machines."
        )
    return path
