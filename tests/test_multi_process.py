"""Past one host: several JAX processes joined on the loopback address.

Two local processes of 4 host devices each stand for two hosts of a pod
slice: they must train exactly as one process over 8 devices on the same
global batches, and a SIGKILL followed by a resume of both must continue
where the run stood.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import pytest

from keras_spactor import distribution

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = [
    "pretrain",
    "--preset", "spactor_t5_nano",
    "--batch-size", "8",
    "--inputs-length", "32",
    "--steps", "6",
    "--tau", "3",
    "--checkpoint-every", "2",
    "--distribution", "data",
]  # fmt: skip
TIMEOUT = 300  # seconds, per run


@pytest.fixture
def vocabulary(tmp_path, data_tokenizer):
    """The session's vocabulary as a `.model` file, for `--vocabulary`."""
    path = tmp_path / "pieces.model"
    path.write_bytes(data_tokenizer.proto)
    return path


def test_process_rows_split_the_global_batch_in_order():
    x = {"ids": np.arange(24).reshape(8, 3)}
    y = np.arange(8)
    parts = [distribution.process_rows((x, y), i, 4) for i in range(4)]
    np.testing.assert_array_equal(
        np.concatenate([p[0]["ids"] for p in parts]), x["ids"]
    )
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), y)
    assert [list(p[1]) for p in parts] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    with pytest.raises(ValueError, match="batch size 8 is not divisible"):
        distribution.process_rows(y, 0, 3)
    # One process keeps the whole batch.
    np.testing.assert_array_equal(distribution.process_rows(y), y)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(arguments, devices, log):
    env = dict(
        os.environ,
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=os.environ.get("XLA_FLAGS", "")
        + f" --xla_force_host_platform_device_count={devices}",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    with open(log, "w") as out:  # a file: no run blocks on a full pipe
        return subprocess.Popen(
            [sys.executable, "-m", "keras_spactor", *RUN, *arguments],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _start_pair(arguments, logs):
    port = str(_free_port())
    return [
        _start(
            [
                *arguments,
                "--coordinator-address",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],  # fmt: skip
            4,
            logs / f"process-{i}.log",
        )
        for i in range(2)
    ]


def _wait(processes, logs):
    """Wait for runs whose output is in `logs` (one log file per run)."""
    for process, log in zip(processes, logs):
        try:
            code = process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            raise
        assert code == 0, log.read_text()[-4000:]


def _weights(run):
    import h5py

    arrays = {}
    with h5py.File(os.path.join(run, "preset", "model.weights.h5")) as f:
        f.visititems(
            lambda name, item: (
                arrays.__setitem__(name, item[()])
                if isinstance(item, h5py.Dataset)
                else None
            )
        )
    return arrays


def _assert_same_run(run, reference):
    """The same steps, switch, final losses (1e-5) and weights (1e-4)."""
    with open(reference / "summary.json") as f:
        expected = json.load(f)
    with open(run / "summary.json") as f:
        summary = json.load(f)
    assert summary["steps"] == expected["steps"]
    assert summary["switch_step"] == expected["switch_step"]
    for key in ("loss", "sc_loss", "stage"):
        np.testing.assert_allclose(
            summary["final_logs"][key],
            expected["final_logs"][key],
            rtol=1e-5,
        )
    want, got = _weights(reference), _weights(run)
    assert sorted(got) == sorted(want) and len(want) > 10
    # Across processes the replicas' gradients are summed in another order
    # than within one; six optimizer steps carry that rounding into a few
    # weights (seen: 2.4e-6 on 0.091). Misfed rows would change the masks,
    # and the losses above, by far more.
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.backend_independent  # its runs set KERAS_BACKEND=jax themselves
def test_two_processes_train_as_one_and_resume_after_sigkill(
    tmp_path, vocabulary
):
    common = ["--vocabulary", str(vocabulary)]

    # The reference: one process over 8 devices.
    single = tmp_path / "single"
    reference = _start(
        [*common, "--output-dir", str(single)], 8, tmp_path / "single.log"
    )
    _wait([reference], [tmp_path / "single.log"])
    # Two processes of 4 devices, SIGKILLed after the first checkpoint
    # (step 2; the switch at step 3 compiles a new step, which leaves time).
    pair = tmp_path / "pair"
    checkpoint = pair / "checkpoint.keras"
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = _start_pair([*common, "--output-dir", str(pair)], logs)
    deadline = time.time() + TIMEOUT
    while not checkpoint.exists():
        assert all(p.poll() is None for p in processes), [
            (logs / f"process-{i}.log").read_text()[-3000:] for i in range(2)
        ]
        assert time.time() < deadline
        time.sleep(0.05)
    processes[1].send_signal(signal.SIGKILL)
    # Process 0 would wait for its peer in the next collective: a restart
    # of the job kills it too.
    processes[0].send_signal(signal.SIGKILL)
    for process in processes:
        assert process.wait() == -signal.SIGKILL
    assert not (pair / "summary.json").exists()

    resumed = _start_pair(
        [*common, "--output-dir", str(pair), "--resume"], logs
    )
    _wait(resumed, [logs / f"process-{i}.log" for i in range(2)])
    for i in range(2):
        text = (logs / f"process-{i}.log").read_text()
        # Both continue at the checkpoint's step, in stage 1 (tau = 3).
        assert "resuming at step 2" in text, text[-3000:]
        assert "read again" not in text  # the saved data position was read

    _assert_same_run(pair, single)
    with open(pair / "summary.json") as f:
        assert json.load(f)["switch_step"] == 3
    # Process 0 wrote what a single process writes, and nothing else did.
    assert sorted(os.listdir(pair)) == sorted(os.listdir(single))


@pytest.mark.slow  # two CLI runs of the nano preset
def test_only_process_0_writes_files(tmp_path, monkeypatch, vocabulary):
    """A process other than 0 trains, saves into a scratch folder of its
    own (saving runs collectives, so every process saves) and leaves the
    shared output folder to process 0."""
    from keras_spactor import cli
    from keras_spactor import distribution

    monkeypatch.setattr(cli, "join_processes", lambda args: (1, 2))
    monkeypatch.setattr(distribution, "process_index", lambda: 1)
    scratch_folders = []
    make_folder = tempfile.mkdtemp

    def recorded_mkdtemp(*args, **kwargs):
        folder = make_folder(*args, **kwargs)
        if "keras-spactor" in os.path.basename(folder):
            scratch_folders.append(folder)
        return folder

    monkeypatch.setattr(tempfile, "mkdtemp", recorded_mkdtemp)
    output = tmp_path / "run"
    argv = [
        "pretrain",
        "--preset", "spactor_t5_nano",
        "--vocabulary", str(vocabulary),
        "--batch-size", "2",
        "--inputs-length", "32",
        "--steps", "2",
        "--checkpoint-every", "1",
        "--distribution", "data",
        "--multi-process",
        "--output-dir", str(output),
    ]  # fmt: skip
    try:
        assert cli.main(argv) == 0
    finally:  # the CLI sets a global distribution (JAX)
        keras.distribution.set_distribution(None)
    assert not output.exists()
    # It saved into its scratch folder, which is deleted at the end.
    assert len(scratch_folders) == 1
    assert not os.path.exists(scratch_folders[0])
    # Process 0 of the same run writes the output folder.
    monkeypatch.setattr(cli, "join_processes", lambda args: (0, 2))
    monkeypatch.setattr(distribution, "process_index", lambda: 0)
    try:
        assert cli.main(argv) == 0
    finally:
        keras.distribution.set_distribution(None)
    assert {"checkpoint.keras", "preset", "summary.json", "logs"} <= set(
        os.listdir(output)
    )


@pytest.mark.slow
@pytest.mark.backend_independent
def test_two_processes_model_parallel_train_as_one(tmp_path, vocabulary):
    """Kernels sharded 2 ways within each process, the batch 4 ways across
    both: the same run as one process over 8 devices."""
    short = [
        "--vocabulary", str(vocabulary),
        "--distribution", "model",
        "--model-shards", "2",
        "--steps", "2",
        "--tau", "0",  # one stage, one compiled step: half the time
    ]  # fmt: skip
    single = tmp_path / "single"
    reference = _start(
        [*short, "--output-dir", str(single)], 8, tmp_path / "single.log"
    )
    _wait([reference], [tmp_path / "single.log"])
    pair = tmp_path / "pair"
    logs = [tmp_path / f"process-{i}.log" for i in range(2)]
    _wait(_start_pair([*short, "--output-dir", str(pair)], tmp_path), logs)
    _assert_same_run(pair, single)


def test_multi_process_arguments_fail_with_their_reason(capsys):
    from keras_spactor import cli

    def error(*flags, count=2):
        args = cli.build_parser().parse_args(["pretrain", *flags])
        with pytest.raises(SystemExit):
            cli.check_multi_process(args, count)
        return capsys.readouterr().err

    assert "needs --distribution data or model" in error()
    assert "--batch-size 9 is not divisible by the 2 processes" in error(
        "--distribution", "data", "--batch-size", "9"
    )
    import jax

    shards = jax.local_device_count() + 1
    assert f"--model-shards {shards} must divide the" in error(
        "--distribution", "model", "--model-shards", str(shards)
    )
    args = cli.build_parser().parse_args(["pretrain", "--process-id", "1"])
    assert cli.is_multi_process(args)
    assert not cli.is_multi_process(cli.build_parser().parse_args(["pretrain"]))


def test_initialize_processes_checks_before_connecting():
    import keras

    if keras.backend.backend() == "jax":
        with pytest.raises(ValueError, match=r"process_id must be in \[0, 2\)"):
            distribution.initialize_processes("127.0.0.1:1", 2, 2)
    else:
        with pytest.raises(ValueError, match="needs the JAX backend"):
            distribution.initialize_processes("127.0.0.1:1", 2, 0)
    assert (distribution.process_index(), distribution.process_count()) == (
        0,
        1,
    )
    assert distribution.is_chief()
