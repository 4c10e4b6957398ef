"""keras_spactor.distribution: layouts, strategies and distributed training.

The multi-device runs need device flags set before JAX / TF initialise, so
they run `tests/distribution_runner.py` in a subprocess (8 host devices on
JAX, 2 logical CPUs on TF); these tests run under either backend.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_spactor import distribution
from tests import model_helpers

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Distributed losses vs one device: same math, different reduction order.
RTOL = 1e-4
FAKE_DEVICES = [f"cpu:{i}" for i in range(8)]


def _start(backend, extra_env, log_dir):
    env = dict(os.environ, KERAS_BACKEND=backend, **extra_env)
    env["PYTHONPATH"] = os.pathsep.join(
        [REPO_ROOT] + [p for p in [env.get("PYTHONPATH")] if p]
    )
    # A file, not a pipe: neither run may block on a full pipe.
    with open(os.path.join(log_dir, f"{backend}.out"), "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.distribution_runner", backend],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _result(process, backend, log_dir):
    process.wait(timeout=600)
    with open(os.path.join(log_dir, f"{backend}.out")) as f:
        stdout = f.read()
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert process.returncode == 0 and lines, stdout[-4000:]
    return json.loads(lines[-1][len("RESULT ") :]), stdout


@pytest.fixture(scope="module")
def distributed_runs(tmp_path_factory):
    """The current backend's multi-device run (~40-60 s).

    Each backend's run happens in that backend's test pass (CI runs both),
    so the other backend's test is skipped here, not run twice.
    """
    log_dir = str(tmp_path_factory.mktemp("distributed_runs"))
    flags = {
        "jax": {
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")
            + " --xla_force_host_platform_device_count=8"
        },
        "tensorflow": {},
    }
    backend = keras.backend.backend()
    processes = {backend: _start(backend, flags[backend], log_dir)}
    try:
        return {
            name: _result(process, name, log_dir)
            for name, process in processes.items()
        }
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
            process.wait()


def _assert_same_losses(result, baseline):
    assert result["stage"] == [1.0, 1.0, 1.0, 2.0]
    assert result["stage"] == baseline["stage"]
    np.testing.assert_allclose(result["loss"], baseline["loss"], rtol=RTOL)
    assert result["generator_trained_in_stage_1"]
    assert result["generator_frozen_after_tau"]


@pytest.mark.slow
def test_jax_data_and_model_parallel_match_one_device(distributed_runs):
    if "jax" not in distributed_runs:
        pytest.skip("runs in the KERAS_BACKEND=jax test pass")
    results, _ = distributed_runs["jax"]
    assert results["devices"] == 8
    assert results["model_parallel_mesh"] == [2, 4]
    assert results["sharded_variables"] > 0
    single = results["single"]
    # 4 steps in 2 epochs, TauScheduler(tau=3): the switch is mid-epoch.
    _assert_same_losses(single, single)
    _assert_same_losses(results["data_parallel"], single)
    _assert_same_losses(results["model_parallel"], single)


@pytest.mark.slow
def test_tensorflow_mirrored_strategy_matches_one_device(distributed_runs):
    if "tensorflow" not in distributed_runs:
        pytest.skip("runs in the KERAS_BACKEND=tensorflow test pass")
    results, stdout = distributed_runs["tensorflow"]
    # No TPU here: tf_strategy() falls back and says so in one line.
    assert results["strategy"] == "MirroredStrategy"
    assert results["replicas"] == 2
    assert "no TPU found" in stdout
    # Plain span corruption (tau=0) is deterministic: same losses.
    sc, mirrored_sc = results["single_sc"], results["mirrored_sc"]
    assert mirrored_sc["stage"] == [2.0] * 4
    np.testing.assert_allclose(mirrored_sc["loss"], sc["loss"], rtol=RTOL)
    assert mirrored_sc["generator_frozen_after_tau"]
    # Two stages: each replica draws the generator's masks and samples for
    # its own half batch from its own random stream (replica id folded into
    # the seed), so stage 1 (and what follows) is close to one device but
    # not equal; the curriculum itself must be the same.
    single, mirrored = results["single"], results["mirrored"]
    assert mirrored["stage"] == single["stage"] == [1.0, 1.0, 1.0, 2.0]
    # Two random streams on an 8-row batch (about 24 masked slots): the
    # losses, mostly 50 x RTD in stage 1, differed by 0.1-8.7% per step
    # between them in one run. Summing the replicas' losses (2x) or
    # losing the RTD term would still fail.
    np.testing.assert_allclose(mirrored["loss"], single["loss"], rtol=0.15)
    assert mirrored["generator_trained_in_stage_1"]
    assert mirrored["generator_frozen_after_tau"]
    # Per-host pipelines (`per_replica_dataset`) hand each replica the rows
    # Keras's own distribution of the global batch gives it: same run.
    per_replica = results["mirrored_per_replica"]
    assert per_replica["stage"] == mirrored["stage"]
    np.testing.assert_allclose(per_replica["loss"], mirrored["loss"], rtol=1e-6)


def test_per_replica_dataset_slices_each_global_batch_in_order():
    import tensorflow as tf

    class Context:  # what `distribute_datasets_from_function` passes
        def __init__(self, pipeline_id, pipelines=2, replicas=4):
            self.input_pipeline_id = pipeline_id
            self.num_input_pipelines = pipelines
            self.replicas = replicas

        def get_per_replica_batch_size(self, batch_size):
            return batch_size // self.replicas

    class Strategy:  # a pod slice's: 4 replicas on 2 hosts
        num_replicas_in_sync = 4

        def distribute_datasets_from_function(self, pipeline):
            return [
                list(pipeline(Context(i)).as_numpy_iterator()) for i in (0, 1)
            ]

    rows = tf.data.Dataset.range(16).batch(8)  # two global batches of 8
    hosts = distribution.per_replica_dataset(Strategy(), lambda: rows, 8)
    # Host 0 feeds replicas 0 and 1, host 1 replicas 2 and 3, in order.
    assert [[list(b) for b in host] for host in hosts] == [
        [[0, 1], [2, 3], [8, 9], [10, 11]],
        [[4, 5], [6, 7], [12, 13], [14, 15]],
    ]
    with pytest.raises(ValueError, match="batch size 6 is not divisible"):
        distribution.per_replica_dataset(Strategy(), lambda: rows, 6)


def test_tf_strategy_without_tpu_falls_back_to_mirrored(capsys):
    import tensorflow as tf

    strategy = distribution.tf_strategy()
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert out[0].startswith("keras-spactor: no TPU found")
    assert "falling back to tf.distribute.MirroredStrategy" in out[0]


def test_layout_map_names_every_large_kernel():
    mesh = keras.distribution.DeviceMesh(
        (2, 4), ("data", "model"), FAKE_DEVICES
    )
    layouts = distribution.layout_map(mesh)
    model = model_helpers.tiny_model()
    distribution.check_layout_map(layouts, model)
    sharded = {
        v.path: layouts[v.path].axes
        for v in model.variables
        if layouts[v.path] is not None
    }
    assert sharded["token_embedding/embeddings"] == ("model", None)
    assert sharded["token_embedding/reverse_embeddings"] == (None, "model")
    prefixes = [
        "transformer_encoder_layer_1/",
        "transformer_decoder_layer_0/",
        "generator/transformer_layer_0/",
    ]
    for prefix in prefixes:
        query = prefix + "self_attention/query_projector/kernel"
        assert sharded[query] == (None, "model")
        attention_out = prefix + "self_attention/output_projector/kernel"
        assert sharded[attention_out] == ("model", None)
        assert sharded[prefix + "gate_projector/kernel"] == (None, "model")
        assert sharded[prefix + "output_projector/kernel"] == ("model", None)
    cross = "transformer_decoder_layer_1/cross_attention/key_projector/kernel"
    assert sharded[cross] == (None, "model")
    assert sharded["generator_head/dense/kernel"] == (None, "model")
    assert sharded["rtd_head/dense/kernel"] == (None, "model")
    # Relative attention biases (encoder, decoder, generator): replicated.
    assert sum(1 for p in sharded if p.endswith("self_attention/embeddings"))
    # Layer norms and biases fall through to ModelParallel's replication.
    assert "rtd_head/dense/bias" not in sharded


def test_layout_naming_no_variable_is_an_error():
    mesh = keras.distribution.DeviceMesh(
        (2, 4), ("data", "model"), FAKE_DEVICES
    )
    model = model_helpers.tiny_model()
    layouts = distribution.layout_map(mesh)
    layouts["encoder/no_such_layer/kernel"] = (None, "model")
    with pytest.raises(ValueError, match="name no variable.*no_such_layer"):
        distribution.check_layout_map(layouts, model)
    # A tied backbone has no reverse embeddings: say how to fix it.
    tied = keras_spactor_tiny_tied()
    with pytest.raises(ValueError, match="tie_embedding_weights=True"):
        distribution.check_layout_map(distribution.layout_map(mesh), tied)
    distribution.check_layout_map(
        distribution.layout_map(mesh, tie_embedding_weights=True), tied
    )
    with pytest.raises(ValueError, match="'tensor' is not an axis"):
        distribution.layout_map(mesh, model_dim="tensor")


def keras_spactor_tiny_tied():
    import keras_spactor

    return keras_spactor.SpacTorT5(
        model_helpers.tiny_backbone(tie=True),
        vocabulary_size=model_helpers.VOCABULARY_SIZE,
        generator_num_layers=1,
    )


def test_bad_shard_counts_and_batch_sizes_are_errors():
    with pytest.raises(ValueError, match="more model-parallel shards than"):
        distribution.model_parallel(16, devices=FAKE_DEVICES)
    with pytest.raises(ValueError, match="not divisible by model_shards=3"):
        distribution.model_parallel(3, devices=FAKE_DEVICES)
    with pytest.raises(ValueError, match="model_shards must be >= 1"):
        distribution.model_parallel(0, devices=FAKE_DEVICES)
    mesh = keras.distribution.DeviceMesh((8,), ("data",), FAKE_DEVICES)
    data = keras.distribution.DataParallel(device_mesh=mesh)
    with pytest.raises(ValueError, match="batch size 12 is not divisible"):
        distribution.check_batch_size(data, 12)
    distribution.check_batch_size(data, 16)
    mesh = keras.distribution.DeviceMesh(
        (2, 4), ("data", "model"), FAKE_DEVICES
    )
    model = keras.distribution.ModelParallel(
        layout_map=distribution.layout_map(mesh), batch_dim_name="data"
    )
    with pytest.raises(ValueError, match="data axis.*2 shards"):
        distribution.check_batch_size(model, 3)
    distribution.check_batch_size(model, 4)
    distribution.check_batch_size(None, 3)


def test_distribute_sets_up_the_backends_distribution():
    with pytest.raises(ValueError, match="mode must be 'data' or 'model'"):
        distribution.distribute(8, mode="pipeline")
    if keras.backend.backend() != "jax":
        import tensorflow as tf

        with distribution.distribute(8):
            strategy = tf.distribute.get_strategy()
        assert isinstance(strategy, tf.distribute.MirroredStrategy)
        return
    try:
        with pytest.raises(ValueError, match="batch size 12 is not divisible"):
            distribution.distribute(12, devices=FAKE_DEVICES)
        assert keras.distribution.distribution() is None  # nothing set
        distribution.distribute(16, devices=FAKE_DEVICES)
        data = keras.distribution.distribution()
        assert isinstance(data, keras.distribution.DataParallel)
        assert list(data.device_mesh.devices.flat) == FAKE_DEVICES
        with pytest.raises(ValueError, match="data axis.*2 shards"):
            distribution.distribute(3, "model", 4, devices=FAKE_DEVICES)
        distribution.distribute(4, "model", 4, devices=FAKE_DEVICES)
        model = keras.distribution.distribution()
        assert isinstance(model, keras.distribution.ModelParallel)
        assert tuple(model.device_mesh.shape) == (2, 4)
    finally:
        keras.distribution.set_distribution(None)


def test_cli_distribution_errors_come_before_training(tmp_path, capsys):
    from keras_spactor import cli

    def run(*flags):
        output = str(tmp_path / "run")
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["pretrain", "--output-dir", output, *flags])
        assert exit_info.value.code == 2
        return capsys.readouterr().err

    error = run("--model-shards", "2")
    assert "--model-shards needs --distribution model" in error
    error = run("--distribution", "model", "--model-shards", "64")
    if keras.backend.backend() == "jax":
        assert "more model-parallel shards than there are devices" in error
    else:
        assert "model parallelism needs the JAX backend" in error
