"""`PretrainingConfig` and `PretrainingRun`: settings checked and saved, a
resume that contradicts its run refused, and a run killed and resumed in
Python training as the uninterrupted one."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_spactor import cli
from keras_spactor.data.sources import has_splits
from keras_spactor.errors import CheckpointReadError
from keras_spactor.errors import ConfigError
from keras_spactor.errors import RunError
from keras_spactor.errors import RunFinishedError
from keras_spactor.models import SpacTorT5Preprocessor
from keras_spactor.pretraining_config import PretrainingConfig
from keras_spactor.pretraining_config import write_run_config
from keras_spactor.pretraining_run import PretrainingRun

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _vocabulary_cache(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.getbasetemp() / "vocabulary-cache"
    monkeypatch.setenv("KERAS_SPACTOR_CACHE", str(cache))


@pytest.mark.parametrize(
    "settings, field",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"steps": 2.5}, "steps"),
        ({"tau": 0.5}, "tau"),  # a step or "50%", never a bare fraction
        ({"tau": 9, "steps": 4}, "tau"),
        ({"preset": "nope"}, "preset"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"mixed_precision": 1}, "mixed_precision"),
        ({"model_shards": 2}, "model_shards"),
        ({"distribution": "model"}, "model_shards"),
        ({"evaluate_every": 0}, "evaluate_every"),
        ({"warmup_steps": -1}, "warmup_steps"),
    ],
)
def test_invalid_settings_raise_config_error_naming_the_field(settings, field):
    with pytest.raises(ConfigError) as error:
        PretrainingConfig(**settings)
    assert error.value.field == field
    assert f"`{field}`" in str(error.value)
    # Both a `ValueError` and a `RunError`: one `except` catches a run's
    # every stop.
    assert isinstance(error.value, ValueError)
    assert isinstance(error.value, RunError)


def test_config_round_trips_through_config_json_text():
    config = PretrainingConfig(
        preset="spactor_t5_nano",
        steps=30,
        tau="25%",
        batch_size=4,
        learning_rate=3e-4,
        schedule="rsqrt",
        evaluate_every=10,
    )
    saved = json.loads(json.dumps(config.to_dict()))
    assert saved["tau_step"] == 8  # round(0.25 * 30)
    assert saved["versions"]["backend"] == keras.backend.backend()
    assert PretrainingConfig.from_dict(saved) == config
    assert PretrainingConfig.from_dict(saved["arguments"]) == config
    with pytest.raises(ConfigError) as error:
        PretrainingConfig.from_dict({"arguments": {"batch": 4}})
    assert error.value.field == "batch"
    # Frozen: a changed copy is checked again.
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.steps = 60
    with pytest.raises(ConfigError, match="`tau` 40 is larger"):
        dataclasses.replace(config, tau=40)


def _saved_run(output_dir, config):
    """A run folder as a run leaves it, with a checkpoint no model reads."""
    os.makedirs(output_dir)
    write_run_config(output_dir, config.to_dict())
    with open(os.path.join(output_dir, "checkpoint.keras"), "wb") as f:
        f.write(b"not a checkpoint")


def test_a_resume_that_changes_a_fixed_setting_is_refused(tmp_path):
    output_dir = str(tmp_path / "run")
    config = PretrainingConfig(output_dir=output_dir, steps=6, tau=3)
    _saved_run(output_dir, config)
    other = dataclasses.replace(config, batch_size=4, seed=1)
    with pytest.raises(ConfigError) as error:
        PretrainingRun(other, resume=True).run()
    assert error.value.field == "batch_size"
    assert "`batch_size` 4 differs from the run's 8" in str(error.value)
    assert "`seed` 1 differs from the run's 0" in str(error.value)
    # More steps is an extension, not a contradiction: the run goes on to
    # load the checkpoint (which this one is not).
    longer = dataclasses.replace(config, steps=12)
    with pytest.raises(CheckpointReadError, match="cannot be read"):
        PretrainingRun(longer, resume=True).run()
    # Starting over in a used folder is refused too.
    with pytest.raises(ConfigError) as error:
        PretrainingRun(config).run()
    assert error.value.field == "output_dir"
    assert "already holds a run" in str(error.value)


def test_evaluation_reads_a_validation_split_or_named_data(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"text": "one"}\n')
    assert has_splits("builtin:python-docs") and has_splits(str(tmp_path))
    assert not has_splits(str(corpus))
    config = PretrainingConfig(data=str(corpus), evaluate_every=2)
    with pytest.raises(ConfigError) as error:
        config.check_runnable()
    assert error.value.field == "validation_data"
    dataclasses.replace(config, validation_data=str(corpus)).check_runnable()


def test_cli_spells_the_fields_as_its_options():
    message = "`batch_size` 9; pass `resume`; `tau` of `steps`; `x` stays"
    assert cli.flag_names(message) == (
        "--batch-size 9; pass --resume; --tau of --steps; `x` stays"
    )


# The interrupted run: a process of its own, SIGKILLed after a checkpoint.
RUN_SCRIPT = """
import json, sys
from keras_spactor.pretraining_config import PretrainingConfig
from keras_spactor.pretraining_run import PretrainingRun
PretrainingRun(PretrainingConfig.from_dict(json.loads(sys.argv[1]))).run()
"""


@pytest.mark.slow
def test_run_killed_and_resumed_in_python_trains_as_the_uninterrupted_one(
    tmp_path,
):
    settings = dict(
        preset="spactor_t5_nano",
        batch_size=2,
        inputs_length=32,
        steps=6,
        tau=3,
        checkpoint_every=2,
    )
    # The uninterrupted run also evaluates the held-out split (the
    # embedded corpus's own) every 2 steps, which must change nothing.
    whole = PretrainingRun(
        PretrainingConfig(
            output_dir=str(tmp_path / "whole"),
            evaluate_every=2,
            validation_steps=2,
            **settings,
        )
    )
    summary = whole.run()
    assert summary["steps"] == 6 and summary["switch_step"] == 3
    assert summary["validation"]["step"] == 6
    assert np.isfinite(summary["validation"]["validation_sc_loss"])
    assert os.listdir(tmp_path / "whole" / "logs" / "validation")
    assert len(whole.evaluation.results) == 3  # steps 2, 4, 6

    config = PretrainingConfig(output_dir=str(tmp_path / "parts"), **settings)
    checkpoint = tmp_path / "parts" / "checkpoint.keras"
    process = subprocess.Popen(
        [sys.executable, "-c", RUN_SCRIPT, json.dumps(config.to_dict())],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 600
    while not checkpoint.exists() and process.poll() is None:
        assert time.time() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (tmp_path / "parts" / "summary.json").exists()

    resumed = PretrainingRun(config, resume=True)
    assert resumed.run()["steps"] == 6
    assert len(whole.model.weights) == len(resumed.model.weights)
    for a, b in zip(whole.model.weights, resumed.model.weights):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a),
            keras.ops.convert_to_numpy(b),
            rtol=1e-5,
            atol=1e-6,
        )
    with pytest.raises(RunFinishedError, match="already finished 6 steps"):
        PretrainingRun(config, resume=True).run()


def _write_array_batches(path, batches, batch_size=2, seed=0):
    """`batches` batches of random span-corruption-shaped rows for the
    default vocabulary at inputs length 32; returns them as written."""
    from keras_spactor.data import default_vocabulary
    from keras_spactor.data.array_batches import write_array_batches

    preprocessor = SpacTorT5Preprocessor(default_vocabulary(), inputs_length=32)
    rng = np.random.default_rng(seed)
    rows = batches * batch_size
    inputs = rng.integers(3, 500, (rows, 32))
    targets = rng.integers(3, 500, (rows, preprocessor.targets_length))
    written = [
        preprocessor.model_batch(
            inputs[i : i + batch_size], targets[i : i + batch_size]
        )
        for i in range(0, rows, batch_size)
    ]
    assert write_array_batches(str(path), written) == rows
    return preprocessor, written


def test_array_batches_read_back_in_order_and_resume_at_the_step(tmp_path):
    from keras_spactor.data.array_batches import ArrayBatches

    path = tmp_path / "batches.npz"
    preprocessor, written = _write_array_batches(path, batches=5)
    batches = ArrayBatches(str(path), 2, preprocessor)
    assert len(batches) == 5
    assert batches.resume(3) == 0  # nothing read again
    read = list(batches.batches())
    assert len(read) == 2
    for (x, y, w), (x0, y0, w0) in zip(read, written[3:]):
        np.testing.assert_array_equal(y, y0)
        np.testing.assert_array_equal(w, w0)
        for key in x0:
            np.testing.assert_array_equal(x[key], x0[key])
    longer = SpacTorT5Preprocessor(preprocessor.tokenizer, inputs_length=64)
    with pytest.raises(ValueError, match="rows of 32 inputs and 8 targets"):
        ArrayBatches(str(path), 2, longer)


def test_array_batches_are_checked_before_the_run(tmp_path):
    path = str(tmp_path / "batches.npz")
    _write_array_batches(path, batches=3)
    config = PretrainingConfig(
        data=path, steps=3, tau=1, batch_size=2, inputs_length=32
    )
    config.check_runnable()
    for settings, message in [
        ({"steps": 4}, "holds 3 batches of 2, fewer than the 4 steps"),
        ({"inputs_length": 64}, "inputs of length 32, not 64"),
        ({"data": path + ".not.npz"}, "no array-batches file"),
    ]:
        with pytest.raises(ConfigError, match=message) as error:
            dataclasses.replace(config, **settings).check_runnable()
        assert error.value.field == "data"
    # Held-out evaluation needs held-out batches of their own.
    evaluated = dataclasses.replace(config, evaluate_every=1)
    with pytest.raises(ConfigError) as error:
        evaluated.check_runnable()
    assert error.value.field == "validation_data"
    dataclasses.replace(evaluated, validation_data=path).check_runnable()


# A run on array batches where TensorFlow is not installed: two steps,
# then the same run extended to four.
ARRAY_RUN_SCRIPT = """
import dataclasses, json, sys
sys.modules["tensorflow"] = None  # `import tensorflow` now fails
from keras_spactor.pretraining_config import PretrainingConfig
from keras_spactor.pretraining_run import PretrainingRun
config = PretrainingConfig.from_dict(json.loads(sys.argv[1]))
PretrainingRun(dataclasses.replace(config, steps=2)).run()
PretrainingRun(config, resume=True).run()
assert sys.modules["tensorflow"] is None
"""


@pytest.mark.slow
@pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="compared with a run without TensorFlow, which trains on JAX",
)
def test_run_on_exported_batches_without_tensorflow_trains_as_on_text(
    tmp_path,
):
    from keras_spactor.data import default_vocabulary
    from keras_spactor.data import pretraining_dataset
    from keras_spactor.data.array_batches import write_array_batches

    settings = dict(
        preset="spactor_t5_nano",
        batch_size=2,
        inputs_length=32,
        steps=4,
        tau=1,
        seed=3,
        checkpoint_every=2,
    )
    text = PretrainingRun(
        PretrainingConfig(output_dir=str(tmp_path / "text"), **settings)
    )
    assert text.run()["steps"] == 4
    # The batches the text run read, stored as it reads them.
    path = str(tmp_path / "batches.npz")
    keras.utils.set_random_seed(3)
    preprocessor = SpacTorT5Preprocessor(default_vocabulary(), inputs_length=32)
    dataset = pretraining_dataset(
        "builtin:python-docs", preprocessor, batch_size=2, seed=3
    )
    write_array_batches(path, dataset.take(4).as_numpy_iterator())

    config = PretrainingConfig(
        output_dir=str(tmp_path / "arrays"), **dict(settings, data=path)
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    result = subprocess.run(
        [sys.executable, "-c", ARRAY_RUN_SCRIPT, json.dumps(config.to_dict())],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming at step 2" in result.stdout
    assert "no TensorBoard logs" in result.stderr
    assert not os.path.exists(tmp_path / "arrays" / "data_state")
    arrays = keras.saving.load_model(
        str(tmp_path / "arrays" / "checkpoint.keras")
    )
    assert int(keras.ops.convert_to_numpy(arrays.optimizer.iterations)) == 4
    for a, b in zip(text.model.weights, arrays.weights):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a),
            keras.ops.convert_to_numpy(b),
            rtol=1e-5,
            atol=1e-6,
        )
