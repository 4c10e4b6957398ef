"""Test-session settings, and shared fixtures of the data tests (`data_*`)."""

import os

import pytest

# XLA's CPU compiler spends most of a tiny model's fit in LLVM's
# optimisation passes: a 4-step fit took 25 s, 19 of them compiling its two
# train steps; at optimisation level 0, 10 s, 6 of them compiling. The
# tests check values, which these passes must not change, not speed. Set
# before JAX loads, and inherited by the CLI runs the tests start;
# KERAS_SPACTOR_TEST_OPTIMIZED_XLA=1 keeps XLA's defaults.
FAST_COMPILE_XLA_FLAGS = (
    "--xla_backend_optimization_level=0"
    " --xla_llvm_disable_expensive_passes=true"
)
if os.environ.get("KERAS_SPACTOR_TEST_OPTIMIZED_XLA") != "1":
    os.environ["XLA_FLAGS"] = " ".join(
        filter(None, [os.environ.get("XLA_FLAGS"), FAST_COMPILE_XLA_FLAGS])
    )

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
