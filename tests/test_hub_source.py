"""`hf:` sources, read from a loopback server that plays the Hub."""

import gzip
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from keras_spactor import cli
from keras_spactor import run_messages
from keras_spactor.data import pretraining_dataset
from keras_spactor.data.builtin_corpus import builtin_corpus_documents
from keras_spactor.data.hub_source import INSTALL_LINE
from keras_spactor.data.hub_source import HubSource
from keras_spactor.data.sources import check_source
from keras_spactor.data.sources import text_dataset
from tests.hub_server import HubServer
from tests.model_helpers import assert_same_backbone_weights

C4_TRAIN = "hf:me/tiny/en/c4-train.*.json.gz"
CODE = "hf:me/tiny/code/*.jsonl?field=content"
SHARD_DOCS = 40


def _documents():
    """Short real documents, an empty one among them."""
    texts = [t[:200] for t in builtin_corpus_documents("train")[:240]]
    texts[7] = "   "  # skipped and counted, as from a file
    return texts


def _json_lines(texts, field="text"):
    return "".join(json.dumps({field: t, "id": 1}) + "\n" for t in texts)


def _parquet(texts):
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = io.BytesIO()
    table = pa.table({"id": list(range(len(texts))), "text": texts})
    pq.write_table(table, out, row_group_size=16)
    return out.getvalue()


@pytest.fixture(scope="module")
def hub_repo():
    """A C4-shaped repository: `{path: bytes}` and the texts of each part."""
    reason = 'the hub extra: pip install -e ".[test,hub]"'
    pytest.importorskip("huggingface_hub", reason=reason)
    pytest.importorskip("pyarrow", reason=reason)
    texts = _documents()
    train = [texts[i : i + SHARD_DOCS] for i in range(0, 160, SHARD_DOCS)]
    files = {
        f"en/c4-train.{i:05d}-of-00004.json.gz": gzip.compress(
            _json_lines(part).encode()
        )
        for i, part in enumerate(train)
    }
    files["en/c4-validation.00000-of-00001.json.gz"] = gzip.compress(
        _json_lines(texts[160:190]).encode()
    )
    files["en/README.md"] = b"not a shard"
    files["sample/10BT/000_00000.parquet"] = _parquet(texts[190:215])
    files["sample/10BT/001_00000.parquet"] = _parquet(texts[215:240])
    files["code/part-0.jsonl"] = _json_lines(texts[:30], "content").encode()
    return {"files": files, "train": train, "texts": texts}


@pytest.fixture
def hub(hub_repo, monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_SPACTOR_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_SPACTOR_HUB_BACKOFF", "0.01")
    with HubServer({"me/tiny": hub_repo["files"]}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        yield server


def _texts(dataset):
    return [t.decode("utf-8") for t in dataset.as_numpy_iterator()]


def _kept(texts):
    return [t for t in texts if t.strip()]


def test_documents_are_those_of_the_shards(hub, hub_repo):
    texts = hub_repo["texts"]
    train = [t for part in hub_repo["train"] for t in part]
    assert _texts(text_dataset(C4_TRAIN)) == _kept(train)
    # The dataset's own validation shards.
    validation = text_dataset(C4_TRAIN, split="validation")
    assert _texts(validation) == texts[160:190]
    # Parquet, at a revision; a field other than "text".
    parquet = text_dataset("hf:me/tiny@main/sample/10BT/*.parquet")
    assert _texts(parquet) == texts[190:240]
    content = text_dataset(CODE)
    assert _texts(content) == _kept(texts[:30])


def test_batches_equal_those_of_the_same_files_read_locally(
    hub, hub_repo, tmp_path, data_tokenizer
):
    folder = tmp_path / "local"
    folder.mkdir()
    for path, data in hub_repo["files"].items():
        if path.startswith("en/c4-train"):
            (folder / os.path.basename(path)).write_bytes(data)
    kwargs = dict(batch_size=4, inputs_length=32, repeat=False)

    def batches(source, **more):
        ds = pretraining_dataset(source, data_tokenizer, **kwargs, **more)
        return list(ds.as_numpy_iterator())

    local = batches(str(folder / "c4-train.*.json.gz"), shuffle_buffer=0)
    remote = batches(C4_TRAIN, shuffle_buffer=0)
    assert len(local) == len(remote) > 10
    for a, b in zip(local, remote):
        tf.nest.map_structure(np.testing.assert_array_equal, a, b)
    # Shuffled: the same seed gives the same batches again.
    first = batches(C4_TRAIN, shuffle_buffer=64, seed=3)
    again = batches(C4_TRAIN, shuffle_buffer=64, seed=3)
    for a, b in zip(first, again):
        tf.nest.map_structure(np.testing.assert_array_equal, a, b)


def _shard_order(texts, shards):
    """The shards `texts` reads, in order (each must be read whole)."""
    order = []
    while texts:
        index = next(i for i, s in enumerate(shards) if s[0] == texts[0])
        assert texts[: len(shards[index])] == shards[index]
        order.append(index)
        texts = texts[len(shards[index]) :]
    return order


def test_a_seed_shuffles_the_shard_order(hub, hub_repo):
    shards = [_kept(part) for part in hub_repo["train"]]

    def order(seed):
        ds = text_dataset(C4_TRAIN, seed=seed).repeat(2)
        return _shard_order(_texts(ds), shards)

    by_seed = {seed: order(seed) for seed in range(4)}
    assert order(0) == by_seed[0]  # deterministic
    for passes in by_seed.values():
        # Every shard once a pass, and each pass in the same order.
        assert sorted(passes[:4]) == [0, 1, 2, 3]
        assert passes[4:] == passes[:4]
    assert len({tuple(p) for p in by_seed.values()}) > 1


def _checkpointable(dataset):
    options = tf.data.Options()
    options.experimental_external_state_policy = (
        tf.data.experimental.ExternalStatePolicy.IGNORE
    )
    return dataset.with_options(options)


def _settled_downloads(hub):
    """The downloads served once the background fetches have finished (a
    count taken while a prefetch is in flight lands on either side)."""
    count = -1
    while count != sum(hub.downloads.values()):
        count = sum(hub.downloads.values())
        time.sleep(0.5)
    return count


def test_a_restored_iterator_downloads_only_the_shard_it_stands_in(
    hub, hub_repo, tmp_path
):
    def documents():
        return _checkpointable(text_dataset(C4_TRAIN, seed=5).repeat())

    iterator = iter(documents())
    for _ in range(SHARD_DOCS * 40 + 13):  # ten passes in
        next(iterator)
    prefix = str(tmp_path / "state" / "ckpt")
    tf.train.Checkpoint(iterator=iterator).write(prefix)
    reaching_it = _settled_downloads(hub)
    expected = [next(iterator).numpy() for _ in range(SHARD_DOCS * 5)]
    reading_on = _settled_downloads(hub) - reaching_it

    hub.downloads.clear()
    restored = iter(documents())
    tf.train.Checkpoint(iterator=restored).read(prefix).assert_consumed()
    got = [next(restored).numpy()]
    # Restoring fetches at most the shard the reader stood in and, ahead,
    # the one after it (tf.data may wait until it needs their lines), none
    # of those before them.
    assert _settled_downloads(hub) <= 2
    got += [next(restored).numpy() for _ in range(SHARD_DOCS * 5 - 1)]
    assert got == expected
    # From there it downloads what reading on did, not the forty shards
    # read before the checkpoint.
    assert reaching_it >= 40
    assert _settled_downloads(hub) <= reading_on + 2


def test_retries_rate_limits_and_dropped_connections(hub, hub_repo):
    first = "en/c4-train.00000-of-00004.json.gz"
    hub.fail_next(2, status=429, path=first)
    hub.fail_next(1, status=503, path=first)
    hub.drop_next(1, path=first)
    train = [t for part in hub_repo["train"] for t in part]
    assert _texts(text_dataset(C4_TRAIN)) == _kept(train)
    assert hub.downloads[first] == 5  # 4 failures, then the shard


def test_gives_up_with_one_line_naming_the_shard(hub, monkeypatch):
    monkeypatch.setenv("KERAS_SPACTOR_HUB_RETRIES", "3")
    third = "en/c4-train.00002-of-00004.json.gz"
    hub.fail_next(1000, status=503, path=third)
    with pytest.raises(tf.errors.OpError) as error:
        for _ in text_dataset(C4_TRAIN):
            pass
    assert hub.downloads["en/c4-train.00001-of-00004.json.gz"] == 1
    assert hub.downloads[third] == 3
    # What the CLI prints, from the run's handler of data errors.
    assert run_messages.is_data_read_error(error.value)
    line = run_messages.data_error_text(error.value)
    assert line == (
        f"ShardFetchError: hf:me/tiny@main/{third}: download failed after "
        "3 attempts (HTTP 503)"
    )
    # A server gone before the start: the check names what failed.
    hub.stop()
    with pytest.raises(FileNotFoundError, match="Connection refused"):
        check_source(C4_TRAIN)


def test_the_cache_holds_at_most_the_current_and_next_shard(
    hub, hub_repo, tmp_path
):
    cache = tmp_path / "bounded"
    source = HubSource(C4_TRAIN, cache_dir=str(cache))
    documents = source.documents(seed=2).repeat(2)
    (folder,) = [cache / name for name in os.listdir(cache)]
    seen = []
    reading = threading.Event()

    def watch():  # samples the folder while the documents are read
        while not reading.is_set():
            seen.append(os.listdir(folder))
            time.sleep(0.0005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        count = sum(1 for _ in documents)
    finally:
        reading.set()
        watcher.join()
    assert count == 2 * sum(len(p) for p in hub_repo["train"])
    for names in seen:
        whole = [n for n in names if not n.endswith(".partial")]
        assert len(whole) <= 2 and len(names) <= 3, names
    assert len(seen) > 10
    # Every shard was downloaded once a pass, none held on to.
    assert [hub.downloads[p] for p in sorted(hub.downloads)] == [2] * 4
    assert len(os.listdir(folder)) <= 2


def test_a_new_cache_deletes_what_dead_processes_of_this_host_left(
    tmp_path,
):
    from keras_spactor.data.hub_shard_cache import HubShardCache

    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = {
        f"process-{host}-{dead.pid}-a": False,  # ended: deleted
        f"process-{host}-{os.getpid()}-b": True,  # running: kept
        f"process-other-host-{dead.pid}-c": True,  # another host's: kept
    }
    for name in left:
        (tmp_path / name).mkdir()
        (tmp_path / name / "shard.json.gz").write_bytes(b"x")
    cache = HubShardCache(
        "me/tiny", "main", "http://127.0.0.1:9", cache_dir=str(tmp_path)
    )
    assert sorted(os.listdir(tmp_path)) == sorted(
        [name for name, kept in left.items() if kept]
        + [os.path.basename(cache.directory)]
    )


def test_bad_specs_fail_with_one_line(hub):
    with pytest.raises(ValueError, match="hf:OWNER/NAME"):
        HubSource("hf:me")
    with pytest.raises(ValueError, match="only option"):
        HubSource("hf:me/tiny/en/*.json.gz?column=x")
    with pytest.raises(FileNotFoundError, match="no shard matches"):
        check_source("hf:me/tiny/en/c4-test.*.json.gz")
    with pytest.raises(FileNotFoundError, match="cannot list"):
        check_source("hf:me/absent/en/*.json.gz")
    with pytest.raises(FileNotFoundError, match="no validation shards"):
        check_source("hf:me/tiny/sample/10BT/*.parquet", split="validation")
    with pytest.raises(ValueError, match="cannot be listed with others"):
        check_source(f"{C4_TRAIN},docs.jsonl")
    with pytest.raises(ValueError, match="cannot read 'en/README.md'"):
        check_source("hf:me/tiny/en/*")


def test_without_the_hub_extra_an_hf_spec_names_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match=re.escape(INSTALL_LINE)):
        check_source(C4_TRAIN)
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--data", C4_TRAIN, "--output-dir", "unused"])
    error = capsys.readouterr().err.strip()
    assert error.endswith('pip install "keras-spactor[hub]"')
    assert len(error.splitlines()) == 1


# ---------------------------------------------------------------------------
# The CLI, end to end (slow)

TINY = [
    "pretrain",
    "--batch-size", "2",
    "--inputs-length", "32",
    "--checkpoint-every", "2",
    "--tau", "3",
    "--data", C4_TRAIN,
]  # fmt: skip
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pretrain_process(arguments, log):
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "keras_spactor", *TINY, *arguments],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.slow
@pytest.mark.backend_independent
def test_cli_stops_cleanly_when_the_hub_goes_away(
    hub, tmp_path, monkeypatch, capsys
):
    from keras_spactor.callbacks import StopOnNonFiniteLoss

    monkeypatch.setenv("KERAS_SPACTOR_HUB_RETRIES", "2")
    real_batch_end = StopOnNonFiniteLoss.on_train_batch_end

    def hub_goes_away(self, batch, logs=None):
        if batch == 2:
            hub.stop()
        return real_batch_end(self, batch, logs)

    monkeypatch.setattr(
        StopOnNonFiniteLoss, "on_train_batch_end", hub_goes_away
    )
    run = tmp_path / "run"
    with pytest.raises(SystemExit):
        cli.main(
            TINY[:5]
            + ["--steps", "2000", "--data", CODE]
            + ["--output-dir", str(run)]
        )
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "reading --data failed at step" in error
    assert "hf:me/tiny@main/code/part-0.jsonl: download failed" in error
    assert "{{" not in error
    import keras

    step = int(re.search(r"failed at step (\d+)", error).group(1))
    restored = keras.saving.load_model(str(run / "checkpoint.keras"))
    assert (
        int(keras.ops.convert_to_numpy(restored.optimizer.iterations)) == step
    )
    assert not (run / "preset").exists()


@pytest.mark.slow
@pytest.mark.backend_independent  # its runs set KERAS_BACKEND=jax themselves
def test_two_processes_reading_the_hub_train_as_one(
    hub, tmp_path, data_tokenizer
):
    from tests import test_multi_process as multi

    vocabulary = tmp_path / "pieces.model"
    vocabulary.write_bytes(data_tokenizer.proto)
    common = ["--vocabulary", str(vocabulary), "--data", C4_TRAIN]
    single = tmp_path / "single"
    log = tmp_path / "single.log"
    multi._wait(
        [multi._start([*common, "--output-dir", str(single)], 8, log)], [log]
    )
    pair = tmp_path / "pair"
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = multi._start_pair([*common, "--output-dir", str(pair)], logs)
    multi._wait(processes, [logs / f"process-{i}.log" for i in range(2)])
    multi._assert_same_run(pair, single)


@pytest.mark.slow
@pytest.mark.backend_independent  # file operations go through tf.io.gfile
def test_cli_from_the_hub_to_a_bucket_resumes_as_the_uninterrupted_run(
    hub, tmp_path, monkeypatch
):
    from tests.gcs_server import GcsStandIn
    from tests.gcs_server import openssl_available

    if not openssl_available():
        pytest.skip("the GCS stand-in makes its certificates with `openssl`")
    monkeypatch.setenv("KERAS_SPACTOR_CACHE", str(tmp_path / "vocabulary"))
    # The reference: the whole run, into a local folder.
    whole = tmp_path / "whole"
    reference = _pretrain_process(
        ["--steps", "6", "--output-dir", str(whole)], tmp_path / "whole.log"
    )
    assert reference.wait(timeout=600) == 0, (
        tmp_path / "whole.log"
    ).read_text()
    parts = tmp_path / "parts"
    with GcsStandIn(tmp_path / "gcs") as gcs:
        for name, value in gcs.environment().items():
            monkeypatch.setenv(name, value)
        run = ["--steps", "6", "--output-dir", "gs://bucket/run"]
        # Killed right after its first checkpoint reached the bucket.
        process = _pretrain_process(run, tmp_path / "killed.log")
        deadline = time.time() + 600
        while "run/checkpoint.keras" not in gcs.objects("bucket"):
            assert process.poll() is None, (tmp_path / "killed.log").read_text()
            assert time.time() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
        objects = gcs.objects("bucket")
        assert "run/data_state/step-2/state.index" in objects
        assert "run/summary.json" not in objects
        before = sum(hub.downloads.values())
        resumed = _pretrain_process(
            run + ["--resume"], tmp_path / "resumed.log"
        )
        assert resumed.wait(timeout=600) == 0
        log = (tmp_path / "resumed.log").read_text()
        assert "resuming at step 2" in log and "read again" not in log
        # The runs before downloaded shards for many passes (the shuffle
        # buffers hold 10,000 documents); the resume restored them and
        # downloaded the shard it stood in, the next, and what it read on.
        assert before > 20
        assert sum(hub.downloads.values()) - before <= 2 + 4, log[-2000:]
        objects = gcs.objects("bucket")
        assert "run/checkpoint.previous.keras" in objects
        assert not [name for name in objects if ".partial" in name]
        assert any(name.startswith("run/logs/") for name in objects)
        summary = json.loads(gcs.read("bucket", "run/summary.json"))
        for name in objects:
            if name.startswith("run/preset/") and not name.endswith("/"):
                path = parts / name[len("run/preset/") :]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(gcs.read("bucket", name))
    assert summary["steps"] == 6 and summary["switch_step"] == 3
    assert summary["data"] == C4_TRAIN
    assert_same_backbone_weights(whole / "preset", parts)
