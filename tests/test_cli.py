"""`keras-spactor pretrain` end to end at tiny size, resume, bad input."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import keras_hub
import numpy as np
import pytest

from keras_spactor import cli
from tests.model_helpers import assert_same_backbone_weights

TINY = [
    "pretrain",
    "--batch-size", "2",
    "--inputs-length", "32",
    "--checkpoint-every", "2",
    "--tau", "3",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _vocabulary_cache(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.getbasetemp() / "vocabulary-cache"
    monkeypatch.setenv("KERAS_SPACTOR_CACHE", str(cache))


def _pretrain_process(arguments, stderr=subprocess.DEVNULL):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.Popen(
        [sys.executable, "-m", "keras_spactor"] + TINY + arguments,
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
    )


def _fails_with(argv, message, capsys):
    with pytest.raises(SystemExit) as error:
        cli.main(argv)
    assert error.value.code != 0
    assert message in capsys.readouterr().err


def test_bad_arguments_fail_before_work(tmp_path, capsys):
    out = str(tmp_path / "run")
    _fails_with(
        ["pretrain", "--peak-tflops", "0", "--output-dir", out],
        "expected a positive number, got 0",
        capsys,
    )
    _fails_with(
        ["pretrain", "--preset", "nope", "--output-dir", out],
        "valid presets: spactor_t5_base",
        capsys,
    )
    _fails_with(
        ["pretrain", "--steps", "4", "--tau", "9", "--output-dir", out],
        "larger than the run",
        capsys,
    )
    _fails_with(
        ["pretrain", "--data", str(tmp_path / "x.jsonl"), "--output-dir", out],
        "x.jsonl' matched no file",
        capsys,
    )
    (tmp_path / "a.jsonl").write_text('{"text": "one"}\n')
    listed = f"{tmp_path / 'a.jsonl'},{tmp_path / 'b*.jsonl'}"
    _fails_with(
        ["pretrain", "--data", listed, "--output-dir", out],
        "b*.jsonl' matched no file",
        capsys,
    )
    _fails_with(
        ["pretrain", "--resume", "--output-dir", out],
        "no checkpoint to resume",
        capsys,
    )
    os.makedirs(out)
    (tmp_path / "run" / "keep.txt").write_text("earlier work")
    _fails_with(
        ["pretrain", "--output-dir", out], "already holds a run", capsys
    )
    assert (tmp_path / "run" / "keep.txt").read_text() == "earlier work"
    assert not os.path.exists(tmp_path / "run" / "logs")


@pytest.mark.slow
def test_pretrain_resume_matches_uninterrupted_run(tmp_path):
    # Every run in its own process (as a user would run them), so that all
    # three compute under the same conditions.
    whole = str(tmp_path / "whole")
    # (--peak-tflops only adds `mfu` to the logs.)
    _pretrain_process(
        ["--steps", "6", "--output-dir", whole, "--peak-tflops", "1"]
    ).wait()
    # The same command SIGKILLed right after its first checkpoint, resumed.
    parts = str(tmp_path / "parts")
    checkpoint = os.path.join(parts, "checkpoint.keras")
    process = _pretrain_process(["--steps", "6", "--output-dir", parts])
    deadline = time.time() + 600
    while not os.path.exists(checkpoint) and process.poll() is None:
        assert time.time() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not os.path.exists(os.path.join(parts, "summary.json"))
    saved_positions = os.listdir(os.path.join(parts, "data_state"))
    resumed = _pretrain_process(
        ["--steps", "6", "--output-dir", parts, "--resume"],
        stderr=subprocess.PIPE,
    )
    _, errors = resumed.communicate()
    assert resumed.returncode == 0
    # The data position came from the checkpoint's saved state, not from
    # reading the stream up to it again.
    assert "step-2" in saved_positions
    assert "read again" not in errors
    # States are kept only for the checkpoints on disk (steps 4 and 6; that
    # of step 6 exists if `fit` asked for a batch past the last).
    kept = set(os.listdir(os.path.join(parts, "data_state")))
    assert kept - {"step-6"} == {"step-4"}

    for run in (whole, parts):
        with open(os.path.join(run, "summary.json")) as f:
            summary = json.load(f)
        assert summary["steps"] == 6
        assert summary["switch_step"] == 3
        assert summary["final_logs"]["stage"] == 2.0
        if run == whole:  # a 2-core CPU is far below 1 TFLOP/s
            assert 0 < summary["final_logs"]["mfu"] < 1
        else:
            assert "mfu" not in summary["final_logs"]
        assert os.listdir(os.path.join(run, "logs"))

    assert_same_backbone_weights(
        os.path.join(whole, "preset"), os.path.join(parts, "preset")
    )


def test_finetune_bad_inputs_fail_before_work(tmp_path, capsys):
    preset = tmp_path / "preset"
    preset.mkdir()
    good = tmp_path / "good.tsv"
    good.write_text("label\tsentence\npositive\tfine\nnegative\tbad\n")
    no_tab = tmp_path / "no_tab.tsv"
    no_tab.write_text("positive\tfine\nnegative bad\n")
    unseen = tmp_path / "unseen.tsv"
    unseen.write_text("neutral\tso so\n")
    out = str(tmp_path / "out")
    base = ["finetune", "--preset", str(preset), "--output-dir", out]
    _fails_with(
        base + ["--train", str(no_tab), "--validation", str(good)],
        "no_tab.tsv, line 2: no tab",
        capsys,
    )
    _fails_with(
        base + ["--train", str(good), "--validation", str(unseen)],
        "unseen in training: ['neutral']",
        capsys,
    )
    _fails_with(
        base + ["--train", str(tmp_path / "x.tsv"), "--validation", str(good)],
        "No such labelled TSV file",
        capsys,
    )
    both = base + ["--train", str(good), "--validation", str(good)]
    _fails_with(
        both + ["--steps", "10", "--warmup-steps", "11"],
        "--warmup-steps 11 is not in [0, 10 steps]",
        capsys,
    )
    _fails_with(
        both + ["--learning-rate", "0"], "must be positive, got 0.0", capsys
    )
    _fails_with(both + ["--scoring", "max"], "invalid choice: 'max'", capsys)
    _fails_with(both + ["--decoder", "fresh"], "no readable keras-hub", capsys)
    (preset / "config.json").write_text(
        json.dumps({"config": {"tie_embedding_weights": True}})
    )
    _fails_with(both + ["--decoder", "fresh"], "ties its output head", capsys)
    missing = ["finetune", "--preset", str(tmp_path / "none")]
    _fails_with(
        missing
        + [
            "--output-dir",
            out,
            "--train",
            str(good),
            "--validation",
            str(good),
        ],
        "does not exist",
        capsys,
    )
    assert not os.path.exists(out)


@pytest.mark.slow
@pytest.mark.backend_independent
def test_pretrain_then_finetune_on_sst2(tmp_path):
    # The shipped labelled sentences, read as plain TSV files.
    from keras_spactor.data.examples import labelled_tsv
    from keras_spactor.labelled_data import read_labelled_tsv

    train = labelled_tsv("sentiment-tiny", "train")
    validation = labelled_tsv("sentiment-tiny", "validation")
    run = str(tmp_path / "run")
    cli.main(TINY + ["--steps", "2", "--tau", "1", "--output-dir", run])
    out = str(tmp_path / "sst2")
    cli.main(
        [
            "finetune",
            "--preset", os.path.join(run, "preset"),
            "--train", train,
            "--validation", validation,
            "--output-dir", out,
            "--max-train-examples", "32",
            "--max-validation-examples", "12",
            "--steps", "12",
            "--batch-size", "16",
            "--encoder-length", "32",
            "--scoring", "summed",
            "--generate",
        ]
    )  # fmt: skip
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["labels"] == ["negative", "positive"]
    assert metrics["evaluation_examples"] == 12
    assert metrics["steps"] == 12
    assert metrics["warmup_steps"] == 1
    assert metrics["scoring"] == "summed"
    curve = metrics["train_loss_curve"]
    assert len(curve) == 10
    assert curve[-1] < curve[0]
    labels, texts = read_labelled_tsv(validation, 12)
    counts = {c: labels.count(c) for c in ("negative", "positive")}
    assert metrics["evaluation_label_counts"] == counts
    assert metrics["majority_accuracy"] == max(counts.values()) / 12
    assert sum(metrics["prediction_counts"].values()) == 12

    # Both accuracies are those of the saved model: the summed
    # log-likelihood of each label (tokens + EOS) from its logits, and
    # greedy generation.
    lm = keras_hub.models.T5Seq2SeqLM.from_preset(os.path.join(out, "preset"))
    tokenizer = lm.preprocessor.tokenizer
    lm.preprocessor.encoder_sequence_length = 32
    lm.preprocessor.decoder_sequence_length = 5  # `positive` + EOS
    scores = []
    for label in ("negative", "positive"):
        x, y, mask = lm.preprocessor(
            {"encoder_text": texts, "decoder_text": [label] * len(texts)}
        )
        assert int(np.sum(mask[0])) == len(tokenizer.tokenize(label)) + 1
        logits = keras.ops.convert_to_numpy(lm(x)).astype("float64")
        log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        picked = np.take_along_axis(log_probs, np.asarray(y)[..., None], -1)
        scores.append((picked[..., 0] * np.asarray(mask)).sum(-1))
    predicted = np.where(scores[1] > scores[0], "positive", "negative")
    assert metrics["accuracy"] == pytest.approx(np.mean(predicted == labels))
    lm.compile(sampler="greedy")
    generated = lm.generate(
        {"encoder_text": texts, "decoder_text": [""] * len(texts)}, max_length=5
    )
    hits = np.mean([g.strip() == t for g, t in zip(generated, labels)])
    assert metrics["exact_match_accuracy"] == pytest.approx(hits)


# Start-up lines TensorFlow, absl and CUDA print on a CPU-only machine,
# before and after `cli.main` starts, and Keras warnings the CLI filters.
STARTUP_NOTICES = [
    "absl::InitializeLog",
    "oneDNN custom operations",
    "Could not find cuda drivers",
]
RUNTIME_NOISE = [
    "cuInit",
    "was passed an input with a mask attached to it",
    "softmax over axis",
    "`shuffle=True` was passed",
]


def _run_cli(arguments, cache):
    """Runs `python -m keras_spactor` as a user would: stdout + stderr."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-m", "keras_spactor"] + arguments,
        cwd=repo,
        env=dict(os.environ, KERAS_SPACTOR_CACHE=str(cache)),
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


@pytest.fixture(scope="module")
def quiet_runs(tmp_path_factory):
    """A tiny pre-training (stages 1 and 2) and a fine-tuning of it on the
    shipped examples, as in the README, without --verbose."""
    cache = tmp_path_factory.getbasetemp() / "vocabulary-cache"
    run = tmp_path_factory.mktemp("quiet") / "run"
    pretrain = _run_cli(
        TINY + ["--steps", "4", "--tau", "2", "--output-dir", str(run)], cache
    )
    tuned = run.parent / "tuned"
    finetune = _run_cli(
        [
            "finetune",
            "--preset", str(run / "preset"),
            "--train", "builtin:sentiment-tiny",
            "--validation", "builtin:sentiment-tiny",
            "--output-dir", str(tuned),
            "--steps", "2",
        ],
        cache,
    )  # fmt: skip
    return {
        "run": run,
        "pretrain": pretrain,
        "tuned": tuned,
        "finetune": finetune,
    }


@pytest.mark.slow
@pytest.mark.backend_independent
def test_pretrain_output_is_quiet_and_shows_the_stage(quiet_runs):
    output = quiet_runs["pretrain"]
    for noise in RUNTIME_NOISE:
        assert noise not in output
    backend = keras.backend.backend()
    startup = [x for x in output.splitlines() if x.startswith("keras-spactor")]
    assert len(startup) == 1, output
    assert re.match(
        rf"keras-spactor pretrain: backend {backend} on \d+ x ", startup[0]
    )
    assert re.search(r"preset spactor_t5_tiny, [\d.]+M parameters", startup[0])
    assert "tau 2 of 4 steps" in startup[0]
    assert "data builtin:python-docs" in startup[0]
    progress = [x for x in output.splitlines() if "sc_loss:" in x]
    assert len(progress) == 2, output
    # Epoch 1 is steps 0-1 (stage 1), epoch 2 steps 2-3 (stage 2).
    assert "stage: 1.0000" in progress[0] and "mlm_loss:" in progress[0]
    assert "stage: 2.0000" in progress[1]
    for name in ("mlm_loss", "rtd_loss", "rtd_accuracy", "generator_accuracy"):
        assert name not in progress[1]
    with open(quiet_runs["run"] / "summary.json") as f:
        final_logs = json.load(f)["final_logs"]
    assert "mlm_loss" not in final_logs and final_logs["stage"] == 2.0


@pytest.mark.slow
@pytest.mark.backend_independent
def test_finetune_runs_offline_on_the_shipped_examples(quiet_runs):
    for noise in RUNTIME_NOISE:
        assert noise not in quiet_runs["finetune"]
    with open(quiet_runs["tuned"] / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["labels"] == ["negative", "positive"]
    assert metrics["train_examples"] == 40
    assert metrics["evaluation_examples"] == 16


@pytest.mark.slow
@pytest.mark.backend_independent
def test_no_tensorflow_startup_notices(quiet_runs):
    # Printed while TensorFlow loads, before `cli.main`: the entry point,
    # `_cli_startup.main`, filters them (tests/test_cli_startup.py).
    for output in (quiet_runs["pretrain"], quiet_runs["finetune"]):
        for notice in STARTUP_NOTICES:
            assert notice not in output


@pytest.mark.slow
@pytest.mark.backend_independent
def test_verbose_shows_what_quiet_hides(tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "vocabulary-cache"
    out = tmp_path_factory.mktemp("verbose") / "run"
    output = _run_cli(
        TINY
        + ["--steps", "1", "--tau", "0", "--checkpoint-every", "1"]
        + ["--output-dir", str(out), "--verbose"],
        cache,
    )
    # keras-hub's T5 attention warns on every backend and machine.
    assert "was passed an input with a mask attached to it" in output
    assert "tau 0 of 1 step (plain span corruption)" in output


def test_finetune_sources_shipped_and_tfds(tmp_path):
    import tensorflow_datasets as tfds

    from keras_spactor.labelled_data import TFDS_SPEC
    from keras_spactor.labelled_data import labelled_file
    from keras_spactor.labelled_data import read_labelled_tsv

    data = str(tmp_path / "data")
    train = labelled_file("builtin:sentiment-tiny", "train", data)
    validation = labelled_file("builtin:sentiment-tiny", "validation", data)
    for path, n in ((train, 40), (validation, 16)):
        labels, texts = read_labelled_tsv(path)
        assert len(texts) == n and all(texts)
        assert labels.count("positive") == labels.count("negative") == n // 2
    assert not set(read_labelled_tsv(train)[1]) & set(
        read_labelled_tsv(validation)[1]
    )
    # TFDS's mock runs the real `tfds.load` code offline, with random text.
    with tfds.testing.mock_data(num_examples=5):
        path = labelled_file("tfds:glue/sst2", "validation", data)
        assert path == os.path.join(data, "validation.tsv")
        labels, texts = read_labelled_tsv(path)
        assert len(labels) == 5 and set(labels) <= {"negative", "positive"}
        pairs = labelled_file("tfds:glue/rte:train", "train", data)
        labels, texts = read_labelled_tsv(pairs)
        assert all(t.startswith("sentence1: ") for t in texts)
        assert set(labels) <= {"entailment", "not_entailment"}
    match = TFDS_SPEC.fullmatch("tfds:glue/sst2:2.0.0:train[:90%]")
    assert (match["name"], match["split"]) == ("glue/sst2:2.0.0", "train[:90%]")


def test_finetune_unknown_source_fails_before_work(tmp_path, capsys):
    preset = tmp_path / "preset"
    preset.mkdir()
    out = str(tmp_path / "out")
    base = ["finetune", "--preset", str(preset), "--output-dir", out]
    _fails_with(
        base + ["--train", "builtin:nope", "--validation", "builtin:nope"],
        "Unknown example data set 'nope'",
        capsys,
    )
    _fails_with(
        base + ["--train", "tfds:", "--validation", "builtin:sentiment-tiny"],
        "expected tfds:NAME[:SPLIT]",
        capsys,
    )
    _fails_with(
        base + ["--train", "tfds:no_such_set", "--validation", "tfds:x"],
        "Dataset no_such_set not found",
        capsys,
    )
    # Nothing left that would make the rerun find --output-dir taken.
    assert not os.path.exists(out) or not os.listdir(out)


def test_stderr_filter_drops_only_known_noise(capfd):
    from keras_spactor.cli_output import STARTUP_NOISE
    from keras_spactor.cli_output import StderrLineFilter

    noise = (
        "WARNING: All log messages before absl::InitializeLog() is called "
        "are written to STDERR\n"
        "I0000 00:00:1795756809.768140   13292 port.cc:153] oneDNN custom "
        "operations are on.\n"
        "E0000 00:00:1795756813.526805   13292 cuda_platform.cc:52] failed "
        "call to cuInit: INTERNAL: CUDA error\n"
    )
    kept = (
        "E0000 00:00:1795756813.526805   13292 cuda_platform.cc:52] a real "
        "error\nTraceback (most recent call last):\n"
    )
    stderr = StderrLineFilter(STARTUP_NOISE)
    stderr.start()
    try:
        os.write(2, noise.encode() + kept[:20].encode())
        os.write(2, kept[20:].encode() + b"50%\r60%\r70")
    finally:
        stderr.stop()
    assert capfd.readouterr().err == kept + "50%\r60%\r70"


def test_stage_logs_and_verbose_detection():
    from keras_spactor.callbacks.stage_progbar_logger import stage_logs
    from keras_spactor.cli_output import asks_verbose

    logs = {"loss": 1.0, "mlm_loss": 0.0, "rtd_accuracy": 0.0, "stage": 2.0}
    assert stage_logs(logs, epoch_start=4, tau=4) == {"loss": 1.0, "stage": 2.0}
    assert stage_logs(logs, epoch_start=3, tau=4) is logs  # ran stage 1
    assert stage_logs(logs, epoch_start=9, tau=None) is logs
    assert asks_verbose(["pretrain", "--verb"])
    assert not asks_verbose(["finetune", "--v", "--validation", "x.tsv"])
