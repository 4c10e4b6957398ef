"""`SpacTorT5` on JAX where TensorFlow is not installed.

The input pipeline is `tf.data`, but the model is Keras 3 and keras-hub:
a JAX user who brings batches as arrays (e.g. written once where
TensorFlow is, as `tools/reproduce_paper.py --export-batches` does for GPU
machines) must be able to import the package and train.
"""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = """
import json
import sys

sys.modules["tensorflow"] = None  # `import tensorflow` now fails
import keras_hub
import numpy as np

import keras_spactor

backbone = keras_hub.models.T5Backbone(
    vocabulary_size=208, num_layers=1, num_heads=2, hidden_dim=16,
    intermediate_dim=32, dropout=0.0,
)
model = keras_spactor.SpacTorT5(
    backbone, vocabulary_size=200, tau=2, generator_num_layers=1, seed=0
)
rng = np.random.RandomState(0)
inputs = rng.randint(3, 100, size=(8, 12)).astype("int32")
inputs[:, 5] = 199  # a sentinel
targets = rng.randint(3, 100, size=(8, 4)).astype("int32")
targets[:, 0], targets[:, -1] = 199, 1
x, y, weights = keras_spactor.data.model_batch_arrays(inputs, targets)
model.compile(optimizer="adamw")
history = model.fit(x, y, sample_weight=weights, batch_size=4, verbose=0)
model.fit(x, y, sample_weight=weights, batch_size=4, verbose=0)
print(json.dumps({
    "rtd_loss": history.history["rtd_loss"][-1],
    "stage": model.current_stage(),
    "tensorflow_loaded": sys.modules.get("tensorflow") is not None,
}))
"""


@pytest.mark.slow  # a fresh Python process
@pytest.mark.backend_independent  # it sets KERAS_BACKEND=jax itself
def test_import_and_train_on_jax_without_tensorflow():
    env = dict(os.environ, KERAS_BACKEND="jax")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert not report["tensorflow_loaded"]
    # Two hybrid steps (RTD trained), then the switch at tau=2.
    assert report["rtd_loss"] > 0
    assert report["stage"] == 2


SAME_NAME_SCRIPT = """
import importlib
import json

import keras_spactor

# Import the modules first, as other code may, then the names.
for name in ("pretraining_dataset", "span_corruption"):
    importlib.import_module(f"keras_spactor.data.{name}")
print(json.dumps({
    name: getattr(keras_spactor.data, name).__class__.__name__
    for name in ("pretraining_dataset", "span_corruption")
}))
"""


@pytest.mark.slow  # a fresh Python process
@pytest.mark.backend_independent
def test_data_names_are_the_functions_whatever_was_imported_first():
    # Names are imported on first use; a submodule imported before would
    # otherwise shadow the function of the same name.
    result = subprocess.run(
        [sys.executable, "-c", SAME_NAME_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    kinds = json.loads(result.stdout.strip().splitlines()[-1])
    assert kinds == {
        "pretraining_dataset": "function",
        "span_corruption": "function",
    }
