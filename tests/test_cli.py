"""`keras-spactor pretrain` end to end at tiny size, resume, bad input."""

import json
import os

import keras
import keras_hub
import numpy as np
import pytest

from keras_spactor import cli

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


def _fails_with(argv, message, capsys):
    with pytest.raises(SystemExit) as error:
        cli.main(argv)
    assert error.value.code != 0
    assert message in capsys.readouterr().err


def test_bad_arguments_fail_before_work(tmp_path, capsys):
    out = str(tmp_path / "run")
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
        "does not exist",
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
    whole = str(tmp_path / "whole")
    cli.main(TINY + ["--steps", "6", "--output-dir", whole])
    parts = str(tmp_path / "parts")
    cli.main(TINY + ["--steps", "4", "--output-dir", parts])
    cli.main(TINY + ["--steps", "6", "--output-dir", parts, "--resume"])

    for run in (whole, parts):
        with open(os.path.join(run, "summary.json")) as f:
            summary = json.load(f)
        assert summary["steps"] == 6
        assert summary["switch_step"] == 3
        assert summary["final_logs"]["stage"] == 2.0
        assert os.listdir(os.path.join(run, "logs"))

    a = keras_hub.models.T5Backbone.from_preset(os.path.join(whole, "preset"))
    b = keras_hub.models.T5Backbone.from_preset(os.path.join(parts, "preset"))
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(x),
            keras.ops.convert_to_numpy(y),
            rtol=1e-5,
            atol=1e-6,
        )
