"""keras-spactor: SpacTor-T5 pre-training for Keras 3 and keras-hub.

Names are imported on first use (`keras_spactor.SpacTorT5`, `from
keras_spactor import data`): `import keras_spactor` alone loads neither
TensorFlow, Keras nor JAX, so that the `keras-spactor` command quiets
their start-up output before they load (`_cli_startup.py`).

SpacTor's Keras objects (the model, its layers, preprocessor, schedule and
activation) are registered with Keras, so that `keras.saving.load_model`
and keras-hub's `from_preset` find them, when `keras_spactor` is imported
after Keras (`import keras` first, as isort orders imports) or when any
of its names is first used.
"""

import importlib
import sys

__version__ = "0.1.0"

# Each public name: its submodule, or "submodule:attribute".
_EXPORTS = {
    "CheckpointReadError": "errors:CheckpointReadError",
    "CheckpointWriteError": "errors:CheckpointWriteError",
    "ConfigError": "errors:ConfigError",
    "DataReadError": "errors:DataReadError",
    "NonFiniteLossError": "errors:NonFiniteLossError",
    "PretrainingConfig": "pretraining_config:PretrainingConfig",
    "PretrainingRun": "pretraining_run:PretrainingRun",
    "RunError": "errors:RunError",
    "RunFinishedError": "errors:RunFinishedError",
    "SpacTorT5": "models:SpacTorT5",
    "callbacks": "callbacks",
    "data": "data",
    "distribution": "distribution",
    "evaluation": "evaluation",
    "export_to_transformers": "interchange:export_to_transformers",
    "interchange": "interchange",
    "layers": "layers",
    "models": "models",
}

__all__ = sorted(_EXPORTS)

# The modules that register Keras objects on import.
_REGISTERING_MODULES = (
    "models",
    "schedules",
    "interchange.activations",
)


def _register_keras_objects():
    for module in _REGISTERING_MODULES:
        importlib.import_module(f"keras_spactor.{module}")


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(
            f"module 'keras_spactor' has no attribute {name!r}"
        )
    _register_keras_objects()
    module, _, attribute = _EXPORTS[name].partition(":")
    value = importlib.import_module(f"keras_spactor.{module}")
    if attribute:
        value = getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


# With Keras loaded already, registering costs no start-up time the CLI
# could quiet (the CLI's entry point imports this package before Keras).
if "keras" in sys.modules:
    _register_keras_objects()
