"""`keras-spactor pretrain` on `gs://`, against a loopback GCS stand-in.

The CLI runs in its own process, with TensorFlow's GCS client sent to
`tests/gcs_server.py` (see there how); the bucket lives in this process, so
it outlives a CLI process killed with SIGKILL.
"""

import gzip
import json
import os
import signal
import subprocess
import sys
import time

import keras
import keras_hub
import numpy as np
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
TINY = [
    "pretrain",
    "--batch-size", "2",
    "--inputs-length", "32",
    "--checkpoint-every", "2",
    "--tau", "3",
    "--steps", "6",
]  # fmt: skip


def _pretrain_process(arguments, environment, stderr=subprocess.DEVNULL):
    return subprocess.Popen(
        [sys.executable, "-m", "keras_spactor"] + TINY + arguments,
        cwd=REPO,
        env={**os.environ, **environment},
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
    )


def _download(gcs, bucket, prefix, folder):
    """The objects under `prefix`, written below `folder` (read from the
    stand-in's own store, not through TensorFlow)."""
    for name in gcs.objects(bucket):
        if name.startswith(prefix) and not name.endswith("/"):
            path = os.path.join(folder, name[len(prefix) :])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(gcs.read(bucket, name))
    return folder


def test_pretrain_on_gcs_killed_and_resumed(tmp_path):
    documents = builtin_corpus_documents("train")[:200]
    corpus = tmp_path / "corpus.train.jsonl.gz"
    with gzip.open(corpus, "wt") as f:
        f.writelines(json.dumps({"text": t}) + "\n" for t in documents)
    vocabulary = train_vocabulary(
        documents, str(tmp_path / "vocabulary"), vocabulary_size=500
    )["model_file"]
    local = {"KERAS_SPACTOR_CACHE": str(tmp_path / "cache")}

    # The reference: the whole run on local files.
    whole = str(tmp_path / "whole")
    reference = _pretrain_process(
        ["--data", str(corpus), "--vocabulary", vocabulary]
        + ["--output-dir", whole],
        local,
    )
    assert reference.wait() == 0

    with GcsStandIn(tmp_path / "gcs") as gcs:
        with open(corpus, "rb") as f:
            gcs.put("bucket", "corpus/docs.train.jsonl.gz", f.read())
        with open(vocabulary, "rb") as f:
            gcs.put("bucket", "vocabulary/v.model", f.read())
        run = [
            "--data", "gs://bucket/corpus/*.jsonl.gz",
            "--vocabulary", "gs://bucket/vocabulary/v.model",
            "--output-dir", "gs://bucket/run",
        ]  # fmt: skip
        environment = {**local, **gcs.environment()}
        # Killed right after its first checkpoint reached the bucket.
        process = _pretrain_process(run, environment)
        deadline = time.time() + 600
        while "run/checkpoint.keras" not in gcs.objects("bucket"):
            assert process.poll() is None, "the run ended before a checkpoint"
            assert time.time() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
        objects = gcs.objects("bucket")
        assert "run/summary.json" not in objects
        assert "run/config.json" in objects
        assert "run/data_state/step-2/state.index" in objects

        resumed = _pretrain_process(
            run + ["--resume"], environment, stderr=subprocess.PIPE
        )
        _, errors = resumed.communicate()
        assert resumed.returncode == 0, errors[-3000:]
        # The data position came from the saved state in the bucket.
        assert "read again" not in errors
        objects = gcs.objects("bucket")
        assert "run/checkpoint.previous.keras" in objects
        assert not [name for name in objects if ".partial" in name]
        assert any(name.startswith("run/logs/") for name in objects)
        states = {n.split("/")[2] for n in objects if "data_state/s" in n}
        assert states - {"step-6"} == {"step-4"}
        summary = json.loads(gcs.read("bucket", "run/summary.json"))
        parts = _download(gcs, "bucket", "run/preset/", str(tmp_path / "p"))

    with open(os.path.join(whole, "summary.json")) as f:
        expected = json.load(f)
    assert summary["steps"] == expected["steps"] == 6
    assert summary["switch_step"] == 3
    a = keras_hub.models.T5Backbone.from_preset(os.path.join(whole, "preset"))
    b = keras_hub.models.T5Backbone.from_preset(parts)
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(x),
            keras.ops.convert_to_numpy(y),
            rtol=1e-5,
            atol=1e-6,
        )
