"""`gs://` and other `tf.io.gfile` URLs wherever a path is taken.

TensorFlow's `ram://` file system (in this process's memory) stands in for
a bucket here. Against a loopback GCS, `test_cli_gcs.py` reads a run's data
and vocabulary from a bucket, and `test_hub_source.py` kills and resumes a
CLI run whose output folder is a bucket.
Each test compares what it reads through the URL with the same files read
locally, or with the values written.
"""

import gzip
import json
import os
import uuid

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_spactor import cli
from keras_spactor import file_paths
from keras_spactor.callbacks.atomic_checkpoint import AtomicCheckpoint
from keras_spactor.callbacks.atomic_checkpoint import previous_path
from keras_spactor.data import sources
from keras_spactor.data.builtin_corpus import builtin_corpus_documents
from keras_spactor.data.resumable_batches import ResumableBatches
from keras_spactor.data.vocabulary import load_vocabulary
from keras_spactor.data.vocabulary import train_vocabulary
from keras_spactor.errors import CheckpointWriteError
from keras_spactor.evaluation import finetune
from keras_spactor.pretraining_config import read_run_config
from keras_spactor.pretraining_config import write_run_config
from tests.labelled_task_helpers import tiny_lm
from tests.labelled_task_helpers import tokenizer  # noqa: F401 (a fixture)
from tests.labelled_task_helpers import write_tsv


@pytest.fixture
def bucket():
    """A fresh `ram://` folder, deleted afterwards."""
    root = f"ram://bucket-{uuid.uuid4().hex}"
    tf.io.gfile.makedirs(root)
    yield root
    tf.io.gfile.rmtree(root)


def _upload(local_folder, url):
    """Copies a local folder's files to `url` with plain `tf.io.gfile`."""
    for name in os.listdir(local_folder):
        tf.io.gfile.makedirs(url)
        tf.io.gfile.copy(
            os.path.join(local_folder, name), f"{url}/{name}", overwrite=True
        )


def _corpus(folder):
    os.makedirs(folder)
    documents = builtin_corpus_documents("train")[:30]
    with gzip.open(os.path.join(folder, "a.train.jsonl.gz"), "wt") as f:
        for text in documents[:20]:
            f.write(json.dumps({"text": text}) + "\n")
    with open(os.path.join(folder, "b.train.txt"), "w") as f:
        f.write("\n".join(t.replace("\n", " ") for t in documents[20:]))
    with open(os.path.join(folder, "c.validation.jsonl"), "w") as f:
        f.write(json.dumps({"text": "held out"}) + "\n")
    return documents


def test_file_sources_read_through_a_url_as_locally(tmp_path, bucket):
    local = str(tmp_path / "corpus")
    _corpus(local)
    remote = f"{bucket}/corpus"
    _upload(local, remote)

    def local_form(paths):
        return [p.replace(remote, local) for p in paths]

    for spec in ("{}", "{}/*.train.*", "{}/b.train.txt,{}/a.train.jsonl.gz"):
        here = sources.resolve_files(spec.format(local, local))
        there = sources.resolve_files(spec.format(remote, remote))
        assert there[0].startswith("ram://")
        assert local_form(there) == here
    # Local and URL paths in one list.
    mixed = f"{local}/b.train.txt,{remote}/a.train.jsonl.gz"
    assert sources.resolve_files(mixed) == mixed.split(",")
    assert sources.resolve_files(remote, split="validation") == [
        f"{remote}/c.validation.jsonl"
    ]
    expected = list(sources.iter_documents(local))
    assert len(expected) == 30
    assert list(sources.iter_documents(remote)) == expected
    read = sources.text_dataset(remote, validate=True)
    kept = [t.decode() for t in read.as_numpy_iterator()]
    assert kept == [t for t in expected if t.strip()]

    with pytest.raises(FileNotFoundError, match=r"\*\.parquet' matched no"):
        sources.check_source(f"{remote}/*.parquet")
    with pytest.raises(FileNotFoundError, match="for split 'test'"):
        sources.resolve_files(remote, split="test")
    with tf.io.gfile.GFile(f"{remote}/d.train.jsonl", "w") as f:
        f.write('{"text": "fine"}\n{"no text": 1}\n')
    with pytest.raises(ValueError, match=r"d\.train\.jsonl, line 2: .*text"):
        sources.text_dataset(remote)


def test_vocabulary_model_file_at_a_url(tmp_path, bucket):
    info = train_vocabulary(
        builtin_corpus_documents("train")[:80],
        str(tmp_path / "v"),
        vocabulary_size=300,
    )
    url = f"{bucket}/vocab/v.model"
    tf.io.gfile.makedirs(f"{bucket}/vocab")
    tf.io.gfile.copy(info["model_file"], url)
    here = keras_hub.models.T5Tokenizer(proto=info["model_file"])
    there = load_vocabulary(url)
    text = "The assert statement raises an exception <extra_id_0>."
    assert there(text).tolist() == here(text).tolist()
    assert there.get_vocabulary() == here.get_vocabulary()
    with pytest.raises(FileNotFoundError, match="no vocabulary file at"):
        load_vocabulary(f"{bucket}/vocab/absent.model")


def _stream():
    return tf.data.Dataset.range(60).shuffle(20, seed=3).batch(2)


def test_input_positions_saved_and_resumed_at_a_url(bucket):
    everything = [b.tolist() for b in _stream().as_numpy_iterator()]
    directory = f"{bucket}/run/data_state"
    first = ResumableBatches(_stream(), directory, save_every=3)
    stream = first.batches()
    read = [next(stream).tolist() for _ in range(7)]
    assert read == everything[:7]
    assert first.saved_steps() == [0, 3, 6]
    # A state whose index never arrived (a copy cut off) does not count.
    tf.io.gfile.makedirs(f"{directory}/step-9")
    with tf.io.gfile.GFile(f"{directory}/step-9/state.data-0", "w") as f:
        f.write("half")
    assert first.saved_steps() == [0, 3, 6]
    assert not tf.io.gfile.exists(f"{directory}/step-6.partial")

    resumed = ResumableBatches(_stream(), directory, save_every=3)
    assert resumed.resume(6) == 0  # from the saved state, nothing replayed
    again = resumed.batches()
    assert [next(again).tolist() for _ in range(5)] == everything[6:11]
    # Step 9's state is written over the broken one.
    assert resumed.saved_steps() == [0, 3, 6, 9]
    resumed.keep([6, 9])
    assert resumed.saved_steps() == [6, 9]
    resumed.discard_after(6)
    assert file_paths.listdir(directory) == ["step-6"]


def _model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def _kernel(path):
    return keras.saving.load_model(path).layers[0].kernel.numpy()


def test_checkpoint_and_previous_at_a_url(bucket, monkeypatch):
    model = _model()
    path = f"{bucket}/run/checkpoint.keras"
    tf.io.gfile.makedirs(f"{bucket}/run")
    saver = AtomicCheckpoint(path)
    saver.set_model(model)
    kernels = []
    for step in (1, 2):
        model.layers[0].kernel.assign(np.full((3, 2), float(step), "float32"))
        kernels.append(model.layers[0].kernel.numpy())
        saver.save(step)
    np.testing.assert_array_equal(_kernel(path), kernels[1])
    np.testing.assert_array_equal(_kernel(previous_path(path)), kernels[0])
    assert saver.saved_steps == [1, 2]

    def fail(step):
        raise OSError("bucket full")

    # A failed write leaves both checkpoints and no temporary object.
    saver.before_save = fail
    model.layers[0].kernel.assign(np.zeros((3, 2), "float32"))
    with pytest.raises(CheckpointWriteError, match="bucket full.*step 2"):
        saver.save(3)
    np.testing.assert_array_equal(_kernel(path), kernels[1])
    np.testing.assert_array_equal(_kernel(previous_path(path)), kernels[0])
    assert sorted(file_paths.listdir(f"{bucket}/run")) == [
        "checkpoint.keras",
        "checkpoint.previous.keras",
    ]

    # A copy that fails (the bucket went away) stops with one error too.
    saver.before_save = None

    def unreachable(source, target):
        raise OSError(f"{target}: connection reset")

    monkeypatch.setattr(file_paths, "keep_copy", unreachable)
    with pytest.raises(CheckpointWriteError, match="into place.*reset"):
        saver.save(3)
    np.testing.assert_array_equal(_kernel(path), kernels[1])


def _fails_with(argv, message, capsys):
    with pytest.raises(SystemExit) as error:
        cli.main(argv)
    assert error.value.code == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and message in errors[0], errors


def test_cli_names_a_bad_url_in_one_line(bucket, capsys, monkeypatch):
    monkeypatch.setenv("KERAS_SPACTOR_CACHE", f"{bucket}/never-used")
    run = ["pretrain", "--output-dir", f"{bucket}/run"]
    _fails_with(
        ["pretrain", "--output-dir", "nosuch://b/run"],
        "--output-dir: nosuch://b/run: File system scheme 'nosuch'",
        capsys,
    )
    _fails_with(
        run + ["--data", "nosuch://b/*.jsonl"],
        "--data: nosuch://b/*.jsonl: File system scheme 'nosuch'",
        capsys,
    )
    _fails_with(
        run + ["--data", f"{bucket}/corpus/*.jsonl"],
        "*.jsonl' matched no file",
        capsys,
    )
    _fails_with(run + ["--resume"], "there is no checkpoint to resume", capsys)
    _fails_with(
        run + ["--vocabulary", f"{bucket}/absent.model"],
        f"--vocabulary: no vocabulary file at {bucket}/absent.model",
        capsys,
    )


def test_run_config_at_a_url(bucket):
    assert read_run_config(f"{bucket}/run") is None
    file_paths.makedirs(f"{bucket}/run")
    config = {"arguments": {"steps": 4, "data": "gs://b/*.jsonl"}, "x": [1]}
    write_run_config(f"{bucket}/run", config)
    with tf.io.gfile.GFile(f"{bucket}/run/config.json") as f:
        assert json.loads(f.read()) == config
    assert read_run_config(f"{bucket}/run") == config
    assert file_paths.listdir(f"{bucket}/run") == ["config.json"]


def test_folder_copied_with_the_marker_last(tmp_path, bucket, monkeypatch):
    local = tmp_path / "tree"
    (local / "sub").mkdir(parents=True)
    for name in ("z.index", "a.data", "sub/b.data"):
        (local / name).write_text(name)
    copied = []
    copy = tf.io.gfile.copy

    def recording_copy(source, target, overwrite=False):
        copied.append(os.path.relpath(source, str(local)))
        copy(source, target, overwrite=overwrite)

    monkeypatch.setattr(tf.io.gfile, "copy", recording_copy)
    file_paths.copy_tree(str(local), f"{bucket}/tree", last=("z.index",))
    assert copied[-1] == "z.index"
    assert sorted(copied) == ["a.data", "sub/b.data", "z.index"]
    for name in copied:
        with tf.io.gfile.GFile(f"{bucket}/tree/{name}") as f:
            assert f.read() == name
    # And on to another URL folder, the source deleted.
    file_paths.publish_directory(f"{bucket}/tree", f"{bucket}/final")
    assert not tf.io.gfile.exists(f"{bucket}/tree")
    assert sorted(
        os.path.relpath(os.path.join(root, n), f"{bucket}/final")
        for root, _, names in tf.io.gfile.walk(f"{bucket}/final")
        for n in names
    ) == ["a.data", "sub/b.data", "z.index"]


@pytest.mark.slow
@pytest.mark.backend_independent
def test_finetune_outputs_at_a_url_equal_a_local_run(
    tmp_path,
    bucket,
    tokenizer,  # noqa: F811 (a fixture, imported above)
):
    preset = str(tmp_path / "preset")
    tiny_lm(tokenizer).save_to_preset(preset)
    rows = [("absent", "dog runs"), ("present", "a cat"), ("absent", "sun")]
    train = write_tsv(tmp_path / "train.tsv", rows)
    runs = {"local": str(tmp_path / "out"), "url": f"{bucket}/finetuned"}
    metrics = {
        where: finetune(
            preset, train, train, out, steps=2, warmup_steps=1, batch_size=3
        )
        for where, out in runs.items()
    }
    with tf.io.gfile.GFile(f"{runs['url']}/metrics.json") as f:
        assert json.loads(f.read()) == metrics["url"]
    assert metrics["url"]["accuracy"] == metrics["local"]["accuracy"]
    assert (
        metrics["url"]["train_loss_curve"]
        == metrics["local"]["train_loss_curve"]
    )
    copied = str(tmp_path / "copied")
    file_paths.copy_tree(f"{runs['url']}/preset", copied)
    here = keras_hub.models.T5Seq2SeqLM.from_preset(f"{runs['local']}/preset")
    there = keras_hub.models.T5Seq2SeqLM.from_preset(copied)
    for x, y in zip(here.weights, there.weights):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(x), keras.ops.convert_to_numpy(y)
        )
