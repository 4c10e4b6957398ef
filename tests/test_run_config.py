"""Long runs: tau syntax, tau across fit calls, the saved run config, and
a stop at the first non-finite loss with no checkpoint written from it."""

import argparse
import json
import math
import os
import re

import keras
import numpy as np
import pytest

from keras_spactor import cli
from keras_spactor import pretraining_config
from keras_spactor.callbacks import AtomicCheckpoint
from keras_spactor.callbacks import StopOnNonFiniteLoss
from keras_spactor.callbacks import TauScheduler
from keras_spactor.callbacks.atomic_checkpoint import previous_path
from keras_spactor.callbacks.tau_scheduler import parse_tau
from keras_spactor.errors import CheckpointWriteError
from tests import model_helpers as mh

# ---------------------------------------------------------------------------
# tau: a step or a percentage, nothing ambiguous


@pytest.mark.parametrize(
    "text, expected",
    [(0, 0), (7, 7), ("7", 7), ("50%", 0.5), ("12.5%", 0.125), ("0%", 0.0)],
)
def test_tau_is_a_step_or_a_percentage(text, expected):
    value = parse_tau(text)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("text", ["1.0", 0.5, "1e3", "-1", -1, "150%", True])
def test_ambiguous_or_impossible_tau_is_refused(text):
    with pytest.raises(ValueError, match="tau"):
        parse_tau(text)


def test_cli_tau_syntax(capsys):
    parser = cli.build_parser()
    assert parser.parse_args(["pretrain", "--tau", "25%"]).tau == 0.25
    assert parser.parse_args(["pretrain", "--tau", "1"]).tau == 1
    assert parser.parse_args(["pretrain"]).tau == 0.5
    for bad in ("1.0", "1e3"):
        with pytest.raises(SystemExit):
            parser.parse_args(["pretrain", "--tau", bad])
        assert "percentage" in capsys.readouterr().err


class _Stub:
    """What TauScheduler reads of a model: the step count; what it sets."""

    def __init__(self, iterations):
        self.optimizer = argparse.Namespace(
            iterations=keras.Variable(iterations, dtype="int64")
        )
        self.tau = "unset"


def _begin(scheduler, iterations, steps, epochs):
    model = _Stub(iterations)
    scheduler.set_model(model)
    scheduler.set_params({"steps": steps, "epochs": epochs, "verbose": 0})
    scheduler.on_train_begin()
    return model.tau


def test_percentage_counts_initial_epoch_as_part_of_the_run():
    # Restored at step 500 and fit(epochs=10, initial_epoch=5), 100 steps
    # per epoch: the run is 1,000 steps, the switch at 250.
    assert _begin(TauScheduler("25%"), 500, 100, 10) == 250


def test_percentage_is_resolved_once_across_fit_calls():
    scheduler = TauScheduler("50%", total_steps=300)
    assert [_begin(scheduler, done, 100, 1) for done in (0, 100, 200)] == [
        150,
        150,
        150,
    ]
    # Without total_steps, a loop that outgrows the first call is refused
    # (it would have switched at step 50 of 300).
    alone = TauScheduler("50%")
    assert _begin(alone, 0, 100, 1) == 50
    with pytest.raises(ValueError, match="total_steps"):
        _begin(alone, 100, 100, 1)


@pytest.mark.slow
def test_switch_is_exact_in_a_loop_of_fit_calls():
    """Three fit calls of 2 steps, tau 50% of 6: steps 0-2 hybrid. (Slow:
    tracing both stages' steps takes 12 s on TensorFlow; the fast tier
    checks a switch inside one fit.)"""
    model = mh.tiny_model()
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    x, y = mh.span_corruption_like_batch()
    scheduler = TauScheduler("50%", total_steps=6)
    stages = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: stages.append(
            int(round(float(logs["stage"])))
        )
    )
    for _ in range(3):
        model.fit(
            mh.repeated_dataset(x, y),
            steps_per_epoch=2,
            epochs=1,
            verbose=0,
            callbacks=[scheduler, record],
        )
    assert stages == [1, 1, 1, 2, 2, 2]


# ---------------------------------------------------------------------------
# The run's config: saved, and checked by a resume


def _args(*argv):
    args = cli.build_parser().parse_args(["pretrain", *argv])
    args.explicit = cli.explicit_options(argv)
    return args


def test_config_holds_every_setting_and_the_versions(tmp_path):
    config = cli.config_from_arguments(
        _args("--batch-size", "4", "--seed", "3", "--tau", "25%")
    )
    assert (config.batch_size, config.seed, config.tau) == (4, 3, "25%")
    pretraining_config.write_run_config(str(tmp_path), config.to_dict())
    saved = pretraining_config.read_run_config(str(tmp_path))
    # Each host of a multi-process run has its own process options: a
    # resume on host 1 must not take host 0's process id from the run.
    assert "process_id" not in saved["arguments"]
    assert saved["arguments"]["batch_size"] == 4
    assert saved["tau_step"] == 30  # 25% of 120
    assert saved["versions"]["keras"] == keras.__version__
    assert saved["versions"]["backend"] == keras.backend.backend()
    assert pretraining_config.PretrainingConfig.from_dict(saved) == config


def _saved_run(output_dir, *argv):
    config = cli.config_from_arguments(_args(*argv, "--output-dir", output_dir))
    pretraining_config.write_run_config(output_dir, config.to_dict())
    with open(os.path.join(output_dir, "checkpoint.keras"), "w"):
        pass  # `saved_run` reads config.json where a checkpoint is


def test_resume_takes_what_is_left_out_and_names_each_mismatch(
    tmp_path, capsys
):
    run = str(tmp_path)
    _saved_run(run, "--batch-size", "4", "--seed", "3", "--steps", "10")
    resume = ["--resume", "--output-dir", run]
    # Left out: taken from the run.
    config = cli.pretraining_config(_args(*resume))
    assert (config.batch_size, config.seed, config.steps) == (4, 3, 10)
    # Given and equal, or --steps raised: fine.
    config = cli.pretraining_config(
        _args(*resume, "--batch-size=4", "--steps", "20")
    )
    assert (config.batch_size, config.steps) == (4, 20)
    # Given and different: one line per option.
    with pytest.raises(SystemExit):
        cli.pretraining_config(
            _args(*resume, "--batch-size", "8", "--seed", "1", "--data", "x")
        )
    lines = capsys.readouterr().err.splitlines()
    assert "was started with other settings" in lines[0]
    assert lines[1:] == [
        "  --data 'x' differs from the run's 'builtin:python-docs'",
        "  --batch-size 8 differs from the run's 4",
        "  --seed 1 differs from the run's 3",
    ]


def test_config_of_an_earlier_version_is_read(tmp_path):
    # config.json of the argparse era: tau as the parsed fraction, no
    # evaluation settings.
    saved = {"arguments": {"tau": 0.5, "steps": 10, "batch_size": 2}}
    config = pretraining_config.PretrainingConfig.from_dict(saved)
    assert (config.tau, config.tau_step(), config.evaluate_every) == (
        "50%",
        5,
        None,
    )


def test_run_without_config_predates_it_and_bad_config_is_an_error(
    tmp_path,
):
    assert pretraining_config.read_run_config(str(tmp_path)) is None
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        pretraining_config.read_run_config(str(tmp_path))


def test_explicit_options_read_both_spellings():
    names = cli.explicit_options(
        ["pretrain", "--batch-size", "8", "--seed=3", "--resume"]
    )
    assert names == {"batch_size", "seed", "resume"}


@pytest.mark.slow
@pytest.mark.backend_independent
def test_cli_resume_refuses_other_settings_and_extends(tmp_path, capsys):
    run = str(tmp_path / "run")
    tiny = ["pretrain", "--batch-size", "2", "--inputs-length", "32"]
    tiny += ["--checkpoint-every", "2", "--tau", "50%", "--output-dir", run]
    cli.main(tiny + ["--steps", "2"])
    with open(os.path.join(run, "config.json")) as f:
        saved = json.load(f)
    assert saved["arguments"]["batch_size"] == 2
    assert saved["tau_step"] == 1
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli.main(
            ["pretrain", "--resume", "--output-dir", run]
            + ["--batch-size", "4", "--seed", "5", "--steps", "4"]
        )
    error = capsys.readouterr().err
    assert "--batch-size 4 differs from the run's 2" in error
    assert "--seed 5 differs from the run's 0" in error
    # Extending: the switch stays at the run's step 1, not 50% of 4.
    cli.main(["pretrain", "--resume", "--output-dir", run, "--steps", "4"])
    with open(os.path.join(run, "summary.json")) as f:
        summary = json.load(f)
    assert summary["steps"] == 4
    assert summary["switch_step"] == 1
    # A damaged checkpoint: a clear error that points at the one before.
    checkpoint = os.path.join(run, "checkpoint.keras")
    with open(checkpoint, "r+b") as f:
        f.truncate(100)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--resume", "--output-dir", run, "--steps", "6"])
    error = capsys.readouterr().err
    assert f"{checkpoint} cannot be read, it is truncated or damaged" in error
    assert "checkpoint.previous.keras" in error
    assert _steps_in(previous_path(checkpoint)) == 2


# ---------------------------------------------------------------------------
# NaN / Inf


def test_first_non_finite_loss_stops_and_is_never_checkpointed(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((8, 3), "float32")
    y = np.ones((8, 1), "float32")
    x[5] = np.nan  # the 6th batch of one example: step 6
    path = str(tmp_path / "checkpoint.keras")
    guard = StopOnNonFiniteLoss()
    saver = AtomicCheckpoint(path)
    model.fit(
        x,
        y,
        batch_size=1,
        epochs=4,
        steps_per_epoch=2,
        shuffle=False,
        verbose=0,
        callbacks=[guard, saver],
    )
    assert guard.bad_step == 6
    assert saver.saved_step == 4  # epochs ending at steps 2 and 4 only
    restored = keras.saving.load_model(path)
    assert int(keras.ops.convert_to_numpy(restored.optimizer.iterations)) == 4
    for weight in restored.weights:
        assert np.isfinite(keras.ops.convert_to_numpy(weight)).all()
    assert math.isfinite(float(restored.predict(x[:1], verbose=0)[0, 0]))


# ---------------------------------------------------------------------------
# Faults: a full disk, a damaged checkpoint, data that vanishes


def _dense_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def _steps_in(path):
    restored = keras.saving.load_model(path)
    return int(keras.ops.convert_to_numpy(restored.optimizer.iterations))


def _fit_epochs(model, saver, epochs):
    x, y = np.ones((8, 3), "float32"), np.ones((8, 1), "float32")
    model.fit(x, y, batch_size=4, epochs=epochs, verbose=0, callbacks=[saver])


def test_checkpoint_keeps_the_one_before(tmp_path):
    path = str(tmp_path / "checkpoint.keras")
    model = _dense_model()
    _fit_epochs(model, AtomicCheckpoint(path), epochs=3)
    assert _steps_in(path) == 6
    assert _steps_in(previous_path(path)) == 4
    assert sorted(os.listdir(tmp_path)) == [
        "checkpoint.keras",
        "checkpoint.previous.keras",
    ]


def test_a_failed_write_loses_nothing_already_saved(tmp_path, monkeypatch):
    path = str(tmp_path / "checkpoint.keras")
    model = _dense_model()
    saver = AtomicCheckpoint(path)
    _fit_epochs(model, saver, epochs=2)
    saved = sorted(os.listdir(tmp_path))

    def full_disk(filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(model, "save", full_disk)
    with pytest.raises(CheckpointWriteError) as error:
        _fit_epochs(model, saver, epochs=1)
    message = str(error.value)
    assert "No space left on device" in message
    assert "(step 4) is intact" in message
    assert sorted(os.listdir(tmp_path)) == saved  # no partial file left
    assert _steps_in(path) == 4
    assert _steps_in(previous_path(path)) == 2


@pytest.mark.slow
@pytest.mark.backend_independent
def test_data_that_vanishes_mid_run_fails_naming_it_after_a_checkpoint(
    tmp_path, monkeypatch, capsys
):
    corpus = tmp_path / "corpus.jsonl"
    with open(corpus, "w") as f:
        # Documents of two pieces: each group of documents tokenized
        # together makes few examples, so the pipeline reads the file again
        # within tens of steps (~70 here), not hundreds.
        for i in range(30):
            f.write(json.dumps({"text": f"Word {i}."}) + "\n")
    real_batch_end = StopOnNonFiniteLoss.on_train_batch_end

    def vanishing(self, batch, logs=None):  # the file is gone after step 3
        if batch == 2 and corpus.exists():
            corpus.unlink()
        return real_batch_end(self, batch, logs)

    # The tiny corpus is read again every few examples: the next reading
    # finds it gone.
    monkeypatch.setattr(StopOnNonFiniteLoss, "on_train_batch_end", vanishing)
    run = tmp_path / "run"
    with pytest.raises(SystemExit):
        cli.main(
            ["pretrain", "--batch-size", "2", "--inputs-length", "32"]
            + ["--steps", "200", "--data", str(corpus)]
            + ["--output-dir", str(run)]
        )
    error = capsys.readouterr().err
    assert "reading --data failed at step" in error
    assert str(corpus) in error and "No such file or directory" in error
    assert "{{" not in error
    step = int(re.search(r"failed at step (\d+)", error).group(1))
    assert _steps_in(str(run / "checkpoint.keras")) == step
    assert not (run / "preset").exists()
