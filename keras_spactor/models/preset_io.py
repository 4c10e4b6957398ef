"""Presets for `SpacTorT5`: built-in shapes, local directories, keras-hub."""

import json
import os

import keras
import keras_hub
import numpy as np

from keras_spactor.models import spactor_presets
from keras_spactor.models.t5x_initialization import (
    initialize_embeddings_like_t5x,
)

SPACTOR_CONFIG_FILE = "spactor.json"
AUXILIARY_WEIGHTS_FILE = "spactor_auxiliary.weights.npz"


def _mask_id_of(tokenizer):
    # Not `token_to_id`: SentencePiece maps an absent piece to `<unk>`.
    vocabulary = tokenizer.get_vocabulary()
    if "<mask>" in vocabulary:
        return vocabulary.index("<mask>")
    return None


def _from_builtin(cls, name, vocabulary_size, tokenizer, dtype, **kwargs):
    if tokenizer is not None:
        vocabulary_size = vocabulary_size or tokenizer.vocabulary_size()
        mask = _mask_id_of(tokenizer)
        if mask is not None:
            kwargs.setdefault("mask_token_id", mask)
    vocabulary_size = vocabulary_size or spactor_presets.T5_VOCABULARY_SIZE
    config = dict(spactor_presets.T5_V1_1)
    config.update(spactor_presets.SPACTOR_PRESETS[name]["backbone"])
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=spactor_presets.embedding_rows(vocabulary_size),
        dtype=dtype,
        **config,
    )
    # keras-hub starts token embeddings at mean 1.0: re-draw them (random
    # weights only; checkpoints below are loaded as they are).
    initialize_embeddings_like_t5x(backbone, vocabulary_size=vocabulary_size)
    return cls(
        backbone,
        vocabulary_size=vocabulary_size,
        tokenizer=tokenizer,
        **kwargs,
    )


def _tokenizer_in(preset):
    try:
        return keras_hub.models.T5Tokenizer.from_preset(preset)
    except Exception:
        return None


def load_preset(
    cls, preset, vocabulary_size=None, tokenizer=None, dtype=None, **kwargs
):
    """See `SpacTorT5.from_preset`."""
    if preset in spactor_presets.SPACTOR_PRESETS:
        return _from_builtin(
            cls, preset, vocabulary_size, tokenizer, dtype, **kwargs
        )
    local = os.path.isdir(preset)
    spactor_file = os.path.join(preset, SPACTOR_CONFIG_FILE)
    if local and not os.path.exists(os.path.join(preset, "config.json")):
        raise ValueError(f"{preset!r} is a directory but holds no preset.")
    if not local and "/" not in preset and not preset.startswith("t5"):
        valid = sorted(spactor_presets.SPACTOR_PRESETS)
        raise ValueError(
            f"Unknown preset {preset!r}. Valid SpacTor presets: {valid}; "
            "also a local preset directory or a keras-hub T5 preset such as "
            "'t5_1.1_base'."
        )
    backbone = keras_hub.models.T5Backbone.from_preset(preset, dtype=dtype)
    if tokenizer is None:
        tokenizer = _tokenizer_in(preset)
    config = {}
    if local and os.path.exists(spactor_file):
        with open(spactor_file) as f:
            config = json.load(f)
    config.update(kwargs)
    if vocabulary_size is not None:
        config["vocabulary_size"] = vocabulary_size
    elif tokenizer is not None:
        config.setdefault("vocabulary_size", tokenizer.vocabulary_size())
    model = cls(backbone, tokenizer=tokenizer, **config)
    weights = os.path.join(preset, AUXILIARY_WEIGHTS_FILE)
    if local and os.path.exists(weights):
        load_auxiliary_weights(model, weights)
    return model


def _auxiliary_variables(model):
    """`{key: variable}` of the generator and heads.

    Keyed by layer, position and variable name, not by `variable.path`:
    paths hold auto-generated sublayer names (`t5_layer_norm_22`) that
    depend on how many layers the process created before, so they differ
    between the saving and the loading process.
    """
    return {
        f"{layer.name}/{i}/{v.name}": v
        for layer in model.auxiliary_layers
        for i, v in enumerate(layer.weights)
    }


def save_auxiliary_weights(model, path):
    values = {
        key: keras.ops.convert_to_numpy(v)
        for key, v in _auxiliary_variables(model).items()
    }
    with open(path, "wb") as f:
        np.savez(f, **values)


def load_auxiliary_weights(model, path):
    with np.load(path) as stored:
        for key, variable in _auxiliary_variables(model).items():
            if key not in stored or stored[key].shape != variable.shape:
                raise ValueError(
                    f"{path} has no weights for {key!r} "
                    f"({variable.path}, shape {variable.shape}): it was "
                    "saved from a model with another generator or heads."
                )
            variable.assign(stored[key])


def save_preset(model, preset_dir):
    """See `SpacTorT5.save_to_preset`."""
    os.makedirs(preset_dir, exist_ok=True)
    model.backbone.save_to_preset(preset_dir)
    if model.tokenizer is not None:
        model.tokenizer.save_to_preset(preset_dir)
    with open(os.path.join(preset_dir, SPACTOR_CONFIG_FILE), "w") as f:
        json.dump(model.spactor_config(), f, indent=2, sort_keys=True)
    save_auxiliary_weights(
        model, os.path.join(preset_dir, AUXILIARY_WEIGHTS_FILE)
    )
