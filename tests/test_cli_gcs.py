"""`gs://` inputs through TensorFlow's own GCS client, against a loopback
GCS stand-in (`tests/gcs_server.py`, see there how).

The reader runs in its own process, whose GCS client is set up from the
environment the stand-in gives. A CLI run that writes to a bucket, is
killed with SIGKILL and resumes is in `tests/test_hub_source.py` (the
bucket lives in the test's process, so it outlives the CLI's).
"""

import gzip
import json
import os
import subprocess
import sys

import pytest

from keras_spactor.data.builtin_corpus import builtin_corpus_documents
from keras_spactor.data.vocabulary import train_vocabulary
from tests.gcs_server import GcsStandIn
from tests.gcs_server import openssl_available

pytestmark = [
    pytest.mark.slow,
    # File operations go through tf.io.gfile on either backend.
    pytest.mark.backend_independent,
    pytest.mark.skipif(
        not openssl_available(),
        reason="the GCS stand-in makes its TLS certificates with `openssl`",
    ),
]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Prints a digest of what `--data` and `--vocabulary` would read from the
# paths given as arguments.
READER = """
import hashlib, sys
from keras_spactor.data import load_vocabulary
from keras_spactor.data.sources import text_dataset
documents = [t.numpy() for t in text_dataset(sys.argv[1])]
pieces = load_vocabulary(sys.argv[2]).vocabulary_size()
digest = hashlib.sha256(b"\\n".join(documents)).hexdigest()
print(len(documents), pieces, digest)
"""


def _read(data, vocabulary, environment):
    result = subprocess.run(
        [sys.executable, "-c", READER, data, vocabulary],
        cwd=REPO,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.split()


def test_data_glob_and_vocabulary_read_from_a_bucket_as_locally(tmp_path):
    documents = builtin_corpus_documents("train")[:200]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for part in range(2):
        with gzip.open(corpus / f"docs-{part}.train.jsonl.gz", "wt") as f:
            f.writelines(
                json.dumps({"text": t}) + "\n" for t in documents[part::2]
            )
    vocabulary = train_vocabulary(
        documents, str(tmp_path / "vocabulary"), vocabulary_size=500
    )["model_file"]
    local = _read(str(corpus / "*.jsonl.gz"), vocabulary, {})
    assert local[:2] == ["200", "500"]

    with GcsStandIn(tmp_path / "gcs") as gcs:
        for path in sorted(corpus.iterdir()):
            gcs.put("bucket", f"corpus/{path.name}", path.read_bytes())
        with open(vocabulary, "rb") as f:
            gcs.put("bucket", "vocabulary/v.model", f.read())
        remote = _read(
            "gs://bucket/corpus/*.jsonl.gz",
            "gs://bucket/vocabulary/v.model",
            gcs.environment(),
        )
    # The same documents in the same order (the glob sorted as locally),
    # and the same vocabulary.
    assert remote == local
