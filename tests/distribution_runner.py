"""Distributed-vs-single-device SpacTor runs, in a fresh process.

`python -m tests.distribution_runner jax` needs KERAS_BACKEND=jax and
XLA_FLAGS=--xla_force_host_platform_device_count=8 (8 host devices);
`python -m tests.distribution_runner tensorflow` needs
KERAS_BACKEND=tensorflow and splits the CPU into 2 logical devices itself.
Both print one JSON line (prefixed `RESULT `) with per-step losses.
"""

import json
import sys

STEPS = 4
TAU = 3  # mid-epoch: the stage-2 step function is built during an epoch
PER_EPOCH = 2
BATCH_SIZE = 8


def _dataset():
    import numpy as np
    import tensorflow as tf

    from tests import model_helpers

    batches = [
        model_helpers.span_corruption_like_batch(batch_size=BATCH_SIZE, seed=s)
        for s in range(STEPS)
    ]
    x = {
        key: np.concatenate([b[0][key] for b in batches])
        for key in batches[0][0]
    }
    y = np.concatenate([b[1] for b in batches])
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH_SIZE)


def _train(build_scope, tau=TAU, data=None):
    """Fit one tiny model; one step per epoch, so history is per step."""
    import keras

    import keras_spactor
    from tests import model_helpers

    snapshots = {}
    losses, stages = [], []

    class PerStep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            # logs["loss"] is the epoch's running mean: undo it.
            mean = float(logs["loss"])
            previous = losses_mean[-1] if batch else 0.0
            losses.append((batch + 1) * mean - batch * previous)
            losses_mean.append(mean)
            stages.append(float(logs["stage"]))
            snapshots[len(losses)] = model_helpers.numpy_weights(
                self.model.generator
            )

    losses_mean = []
    with build_scope():
        model = model_helpers.tiny_model()
        snapshots[0] = model_helpers.numpy_weights(model.generator)
        model.compile(optimizer=keras.optimizers.AdamW(1e-2))
    model.fit(
        data() if data else _dataset().repeat(),
        epochs=STEPS // PER_EPOCH,
        steps_per_epoch=PER_EPOCH,
        callbacks=[keras_spactor.callbacks.TauScheduler(tau=tau), PerStep()],
        verbose=0,
    )
    initial = snapshots[0]

    def same(a, b):
        return all((u == v).all() for u, v in zip(a, b))

    sharded = 0
    for variable in model.variables:
        sharding = getattr(variable.value, "sharding", None)
        if not getattr(sharding, "is_fully_replicated", True):
            sharded += 1
    return {
        "sharded_variables": sharded,
        "loss": losses,
        "stage": stages,
        "generator_trained_in_stage_1": not same(initial, snapshots[1]),
        "generator_frozen_after_tau": all(
            same(snapshots[tau], snapshots[step])
            for step in range(tau, STEPS + 1)
        ),
    }


def run_jax():
    import contextlib

    import keras

    from keras_spactor import distribution

    results = {"devices": len(keras.distribution.list_devices())}
    results["single"] = _train(contextlib.nullcontext)
    data = distribution.data_parallel()
    distribution.check_batch_size(data, BATCH_SIZE)
    results["data_parallel"] = _train(data.scope)
    model = distribution.model_parallel(4)
    distribution.check_batch_size(model, BATCH_SIZE)
    results["model_parallel_mesh"] = list(model.device_mesh.shape)
    results["model_parallel"] = _train(model.scope)
    results["sharded_variables"] = results["model_parallel"][
        "sharded_variables"
    ]
    return results


def run_tensorflow():
    import contextlib

    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    from keras_spactor import distribution

    strategy = distribution.tf_strategy()
    results = {
        "strategy": type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
    }
    # Plain span corruption (tau=0) and the two-stage run.
    results["single_sc"] = _train(contextlib.nullcontext, tau=0)
    results["mirrored_sc"] = _train(strategy.scope, tau=0)
    results["single"] = _train(contextlib.nullcontext)
    results["mirrored"] = _train(strategy.scope)
    # Per-host input pipelines (a pod slice's way), here one for 2 replicas.
    results["mirrored_per_replica"] = _train(
        strategy.scope,
        data=lambda: distribution.per_replica_dataset(
            strategy, lambda: _dataset().repeat(), BATCH_SIZE
        ),
    )
    return results


if __name__ == "__main__":
    backend = sys.argv[1]
    results = run_jax() if backend == "jax" else run_tensorflow()
    print("RESULT " + json.dumps(results), flush=True)
