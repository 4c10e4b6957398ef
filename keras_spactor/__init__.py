"""keras-spactor: SpacTor-T5 pre-training for Keras 3 and keras-hub.

Names are imported on first use (`keras_spactor.SpacTorT5`, `from
keras_spactor import data`): `import keras_spactor` alone loads neither
TensorFlow, Keras nor JAX, so that the `keras-spactor` command quiets
their start-up output before they load (`_cli_startup.py`). SpacTor's
layers are registered with Keras when first used: to read a `.keras` file
that holds them, use `keras_spactor.SpacTorT5` (or import
`keras_spactor.models`) first.
"""

import importlib

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


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(
            f"module 'keras_spactor' has no attribute {name!r}"
        )
    module, _, attribute = _EXPORTS[name].partition(":")
    value = importlib.import_module(f"keras_spactor.{module}")
    if attribute:
        value = getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
