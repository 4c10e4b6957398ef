"""Presets for `SpacTorT5`: built-in shapes, local directories, keras-hub."""

import json
import os

import h5py
import keras
import keras_hub
import numpy as np

from keras_spactor.models import spactor_presets
from keras_spactor.models.t5x_initialization import (
    initialize_embeddings_like_t5x,
)

SPACTOR_CONFIG_FILE = "spactor.json"
AUXILIARY_WEIGHTS_FILE = "spactor_auxiliary.weights.h5"
# What earlier versions wrote (hand-keyed numpy arrays); still read.
LEGACY_AUXILIARY_WEIGHTS_FILE = "spactor_auxiliary.weights.npz"


def _from_builtin(cls, name, vocabulary_size, tokenizer, dtype, **kwargs):
    if vocabulary_size is None and tokenizer is not None:
        vocabulary_size = tokenizer.vocabulary_size()
    vocabulary_size = vocabulary_size or spactor_presets.T5_VOCABULARY_SIZE
    backbone = keras_hub.models.T5Backbone(
        **spactor_presets.backbone_config(name, vocabulary_size),
        dtype=dtype,
    )
    # keras-hub starts token embeddings at mean 1.0: re-draw them.
    initialize_embeddings_like_t5x(backbone, vocabulary_size=vocabulary_size)
    # The mask id comes from the tokenizer (see `SpacTorT5`).
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
    cls,
    preset,
    load_weights=True,
    vocabulary_size=None,
    tokenizer=None,
    dtype=None,
    **kwargs,
):
    """See `SpacTorT5.from_preset`."""
    if preset in spactor_presets.SPACTOR_PRESETS:
        # Architectures only: random weights whatever `load_weights` says.
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
    backbone = keras_hub.models.T5Backbone.from_preset(
        preset, load_weights=load_weights, dtype=dtype
    )
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
    if not load_weights:
        # keras-hub starts token embeddings at mean 1.0, as for built-ins.
        initialize_embeddings_like_t5x(
            backbone, vocabulary_size=model.vocabulary_size
        )
        return model
    if local:
        for name in (AUXILIARY_WEIGHTS_FILE, LEGACY_AUXILIARY_WEIGHTS_FILE):
            path = os.path.join(preset, name)
            if os.path.exists(path):
                load_auxiliary_weights(model, path)
                break
    return model


class AuxiliaryLayers(keras.layers.Layer):
    """A `SpacTorT5`'s generator and heads, for Keras weight files.

    Keras keys a `.weights.h5` file by attribute (`generator/...`), not by
    layer name: the auto-generated sublayer names (`t5_layer_norm_22`)
    depend on how many layers the process made before, so they differ
    between the saving and the loading process.

    Args:
        model: a `SpacTorT5`. Its layers are shared, not copied.
    """

    def __init__(self, model, **kwargs):
        super().__init__(name="spactor_auxiliary", **kwargs)
        self.generator = model.generator
        self.generator_head = model.generator_head
        self.rtd_head = model.rtd_head
        self.built = True


def save_auxiliary_weights(model, path):
    """Save the generator and heads to `path` (`*.weights.h5`)."""
    keras.saving.save_weights(AuxiliaryLayers(model), path)


def load_auxiliary_weights(model, path):
    """Load the generator and heads from `save_auxiliary_weights`'s file.

    Also reads the `.npz` file of earlier versions.
    """
    if str(path).endswith(".npz"):
        _load_legacy_auxiliary_weights(model, path)
        return
    holder = AuxiliaryLayers(model)
    try:
        # Keras ignores arrays the model has no variable for (a deeper
        # generator's): count them.
        stored = _count_arrays(path)
        if stored != len(holder.weights):
            raise ValueError(
                f"{stored} arrays for {len(holder.weights)} variables."
            )
        keras.saving.load_weights(holder, path)
    except ValueError as e:
        raise ValueError(
            f"{path} does not fit this model's generator and heads: it was "
            f"saved from a model with another generator or heads. ({e})"
        ) from e


def _count_arrays(path):
    arrays = []

    def visit(name, item):
        if isinstance(item, h5py.Dataset):
            arrays.append(name)

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return len(arrays)


def _legacy_auxiliary_variables(model):
    # The `.npz` layout: layer name, position and variable name.
    return {
        f"{layer.name}/{i}/{v.name}": v
        for layer in model.auxiliary_layers
        for i, v in enumerate(layer.weights)
    }


def _load_legacy_auxiliary_weights(model, path):
    with np.load(path) as stored:
        for key, variable in _legacy_auxiliary_variables(model).items():
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
    # Beside keras-hub's files, under a name keras-hub does not read.
    save_auxiliary_weights(
        model, os.path.join(preset_dir, AUXILIARY_WEIGHTS_FILE)
    )
