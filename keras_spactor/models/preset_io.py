"""Presets and config of `SpacTorT5`: built-in shapes, local directories,
keras-hub presets, `get_config`."""

import json
import os

import h5py
import keras
import keras_hub
import numpy as np

from keras_spactor import file_paths
from keras_spactor.interchange.transformers_import import (
    load_transformers_checkpoint,
)
from keras_spactor.interchange.transformers_import import (
    transformers_checkpoint_directory,
)
from keras_spactor.models import spactor_presets
from keras_spactor.models.spactor_t5_preprocessor import (
    PREPROCESSOR_CONFIG_FILE,
)
from keras_spactor.models.spactor_t5_preprocessor import SpacTorT5Preprocessor
from keras_spactor.models.spactor_t5_preprocessor import model_preprocessor
from keras_spactor.models.spactor_t5_preprocessor import replace_tokenizer
from keras_spactor.models.t5x_initialization import (
    initialize_embeddings_like_t5x,
)

SPACTOR_CONFIG_FILE = "spactor.json"
AUXILIARY_WEIGHTS_FILE = "spactor_auxiliary.weights.h5"
# What earlier versions wrote (hand-keyed numpy arrays); still read.
LEGACY_AUXILIARY_WEIGHTS_FILE = "spactor_auxiliary.weights.npz"


def _from_builtin(cls, name, vocabulary_size, preprocessor, dtype, **kwargs):
    if vocabulary_size is None and preprocessor is not None:
        vocabulary_size = preprocessor.vocabulary_size
    vocabulary_size = vocabulary_size or spactor_presets.T5_VOCABULARY_SIZE
    backbone = keras_hub.models.T5Backbone(
        **spactor_presets.backbone_config(name, vocabulary_size),
        dtype=dtype,
    )
    # keras-hub starts token embeddings at mean 1.0: re-draw them.
    initialize_embeddings_like_t5x(backbone, vocabulary_size=vocabulary_size)
    # The ids come from the preprocessor (see `SpacTorT5`).
    return cls(
        backbone,
        vocabulary_size=vocabulary_size,
        preprocessor=preprocessor,
        **kwargs,
    )


def _from_transformers(
    cls, directory, load_weights, vocabulary_size, preprocessor, dtype, **kwargs
):
    # A transformers T5: its backbone and tokenizer, a fresh generator and
    # heads, and the mask id the tokenizer leaves free (see `SpacTorT5`).
    backbone, own_tokenizer = load_transformers_checkpoint(
        directory, load_weights=load_weights, dtype=dtype
    )
    if preprocessor is None:
        preprocessor = model_preprocessor(tokenizer=own_tokenizer)
    if vocabulary_size is None and preprocessor is not None:
        vocabulary_size = preprocessor.vocabulary_size
    if vocabulary_size is None:
        raise ValueError(
            f"{directory} has no spiece.model: pass tokenizer= (a "
            "keras_hub.models.T5Tokenizer of the checkpoint's vocabulary)."
        )
    if not load_weights:
        initialize_embeddings_like_t5x(
            backbone, vocabulary_size=vocabulary_size
        )
    return cls(
        backbone,
        vocabulary_size=vocabulary_size,
        preprocessor=preprocessor,
        **kwargs,
    )


def _tokenizer_in(preset):
    try:
        return keras_hub.models.T5Tokenizer.from_preset(preset)
    except Exception:
        return None


def _preprocessor_in(preset, local):
    """The preset's `SpacTorT5Preprocessor`; else one around its tokenizer
    (presets saved before it, keras-hub's own); else `None`."""
    stored = os.path.join(preset, PREPROCESSOR_CONFIG_FILE)
    if local and os.path.exists(stored):
        return SpacTorT5Preprocessor.from_preset(preset)
    tokenizer = _tokenizer_in(preset)
    return None if tokenizer is None else SpacTorT5Preprocessor(tokenizer)


def load_preset(
    cls,
    preset,
    load_weights=True,
    vocabulary_size=None,
    tokenizer=None,
    preprocessor=None,
    dtype=None,
    **kwargs,
):
    """See `SpacTorT5.from_preset`."""
    # What the caller gives: a tokenizer replaces the preprocessor's.
    given = model_preprocessor(preprocessor, tokenizer)
    if preset in spactor_presets.SPACTOR_PRESETS:
        # Architectures only: random weights whatever `load_weights` says.
        return _from_builtin(
            cls, preset, vocabulary_size, given, dtype, **kwargs
        )
    checkpoint = transformers_checkpoint_directory(preset)
    if checkpoint is not None:
        return _from_transformers(
            cls,
            checkpoint,
            load_weights,
            vocabulary_size,
            given,
            dtype,
            **kwargs,
        )
    local = os.path.isdir(preset)
    _check_preset_name(preset, local)
    backbone = keras_hub.models.T5Backbone.from_preset(
        preset, load_weights=load_weights, dtype=dtype
    )
    if preprocessor is None:
        # The stored one (its lengths), with the caller's tokenizer if any.
        given = _preprocessor_in(preset, local)
        if tokenizer is not None:
            given = replace_tokenizer(given, tokenizer)
    config = _saved_config(preset, local, kwargs, given, vocabulary_size)
    model = cls(backbone, **config)
    if not load_weights:
        # keras-hub starts token embeddings at mean 1.0, as for built-ins.
        initialize_embeddings_like_t5x(
            backbone, vocabulary_size=model.vocabulary_size
        )
    elif local:
        _load_stored_auxiliary_weights(model, preset)
    return model


def _check_preset_name(preset, local):
    """A clear error for a directory without a preset, or a name that is
    neither a SpacTor preset nor one keras-hub could resolve."""
    if local and not os.path.exists(os.path.join(preset, "config.json")):
        raise ValueError(f"{preset!r} is a directory but holds no preset.")
    if not local and "/" not in preset and not preset.startswith("t5"):
        valid = sorted(spactor_presets.SPACTOR_PRESETS)
        raise ValueError(
            f"Unknown preset {preset!r}. Valid SpacTor presets: {valid}; "
            "also a local preset directory or a keras-hub T5 preset such as "
            "'t5_1.1_base'."
        )


def _saved_config(preset, local, overrides, preprocessor, vocabulary_size):
    """`SpacTorT5`'s arguments for a saved preset: a local one's stored
    settings (`spactor.json`; a keras-hub preset has none), the caller's
    `overrides`, the `preprocessor` and `vocabulary_size` (by default the
    stored one, else the preprocessor's)."""
    config = {}
    spactor_file = os.path.join(preset, SPACTOR_CONFIG_FILE)
    if local and os.path.exists(spactor_file):
        with open(spactor_file) as f:
            config = json.load(f)
    config.update(overrides)
    config["preprocessor"] = preprocessor
    if vocabulary_size is not None:
        config["vocabulary_size"] = vocabulary_size
    elif preprocessor is not None:
        config.setdefault("vocabulary_size", preprocessor.vocabulary_size)
    return config


def _load_stored_auxiliary_weights(model, preset):
    """The generator and heads a local preset holds, in the current file
    format or the earlier one; none (fresh ones) in a keras-hub preset."""
    for name in (AUXILIARY_WEIGHTS_FILE, LEGACY_AUXILIARY_WEIGHTS_FILE):
        path = os.path.join(preset, name)
        if os.path.exists(path):
            load_auxiliary_weights(model, path)
            return


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
    # keras-hub writes with `os` and `open`: a `gs://` preset is written
    # to a local folder first, then copied.
    file_paths.write_through_local_folder(
        preset_dir, lambda folder: _save_preset_locally(model, folder)
    )


def _save_preset_locally(model, preset_dir):
    os.makedirs(preset_dir, exist_ok=True)
    model.backbone.save_to_preset(preset_dir)
    if model.preprocessor is not None:
        # Its config, and the tokenizer's (keras-hub's `T5Tokenizer`).
        model.preprocessor.save_to_preset(preset_dir)
    with open(os.path.join(preset_dir, SPACTOR_CONFIG_FILE), "w") as f:
        json.dump(model.spactor_config(), f, indent=2, sort_keys=True)
    # Beside keras-hub's files, under a name keras-hub does not read.
    save_auxiliary_weights(
        model, os.path.join(preset_dir, AUXILIARY_WEIGHTS_FILE)
    )


# `SpacTorT5.get_config`'s own keys (its constructor arguments).
CONFIG_KEYS = (
    "vocabulary_size",
    "num_sentinels",
    "mask_token_id",
    "eos_token_id",
    "pad_token_id",
    "generator_num_layers",
    "generator_hidden_dim",
    "generator_num_heads",
    "generator_intermediate_dim",
    "mlm_probability",
    "mask_replacement_rate",
    "max_predictions",
    "sampling_temperature",
    "mlm_loss_weight",
    "rtd_loss_weight",
    "rtd_positions",
    "tau",
    "seed",
)


class PresetAndConfigMixin:
    """`SpacTorT5`'s presets and config: `presets`, `from_preset`,
    `save_to_preset`, `get_config` / `from_config` (the constructor
    arguments, the backbone serialized) and `spactor_config`."""

    # keras-hub's layout: `{name: {"metadata": {"description", "params"},
    # "config"}}`, `config` being the `T5Backbone` arguments at T5's
    # vocabulary and `params` the backbone's (generator and heads aside).
    presets = spactor_presets.keras_hub_presets()

    @classmethod
    def from_preset(
        cls,
        preset,
        load_weights=True,
        *,
        vocabulary_size=None,
        tokenizer=None,
        preprocessor=None,
        dtype=None,
        **kwargs,
    ):
        """Build a SpacTorT5 from a preset, as keras-hub's tasks do.

        Args:
            preset: one of `SpacTorT5.presets` (a T5 v1.1 shape, always
                randomly initialised, for pre-training), a local preset
                directory written by `save_to_preset` (resumes generator
                and heads too), or a keras-hub T5 preset such as
                `"t5_1.1_base"` (downloads; to continue pre-training), or a
            transformers T5 checkpoint: `"hf://google/flan-t5-small"` or
            a local directory `save_pretrained` wrote (its weights and
            `spiece.model`; generator and heads fresh).
            load_weights: bool. If `False`, a directory or keras-hub preset
                gives its architecture with random weights (token
                embeddings drawn as T5X does, like the built-in presets).
                Built-in presets are random either way.
            vocabulary_size: int. Tokenizer vocabulary size (default: the
                tokenizer's, else the preset's, else T5's 32,100).
            tokenizer: a `keras_hub.models.T5Tokenizer` (default: the
                preset's, if any); its `<mask>` piece, if any, becomes
                the mask id. It replaces the preset's in the preprocessor,
                whose lengths stay.
            preprocessor: a `SpacTorT5Preprocessor` (default: the
                preset's, else one around the tokenizer); the model's ids
                come from it.
            dtype: dtype policy of the backbone.
            **kwargs: other `SpacTorT5` arguments (e.g. `tau`, `seed`);
                they override a local preset's stored ones.

        Example:
        ```python
        model = SpacTorT5.from_preset("spactor_t5_tiny", tau=1000)
        # The architecture of a saved preset, from scratch.
        fresh = SpacTorT5.from_preset("./my_preset", load_weights=False)
        ```
        """
        return load_preset(
            cls,
            preset,
            load_weights=load_weights,
            vocabulary_size=vocabulary_size,
            tokenizer=tokenizer,
            preprocessor=preprocessor,
            dtype=dtype,
            **kwargs,
        )

    def save_to_preset(self, preset_dir):
        """Write a keras-hub T5 preset plus what SpacTor needs to resume.

        `keras_hub.models.T5Backbone.from_preset(preset_dir)` and
        `keras_hub.models.T5Seq2SeqLM.from_preset(preset_dir)` load the
        result as they are; `SpacTorT5.from_preset(preset_dir)` also
        restores the SpacTor settings (`spactor.json`) and the generator
        and heads (`spactor_auxiliary.weights.h5`, a Keras weights file).

        Args:
            preset_dir: str. The directory (created if needed); may be a
                `gs://` URL (written locally, then copied).
        """
        save_preset(self, preset_dir)

    def get_config(self):
        config = super().get_config()
        config["backbone"] = keras.layers.serialize(self.backbone)
        config.update({key: getattr(self, key) for key in CONFIG_KEYS})
        if self.preprocessor is not None:
            config["preprocessor"] = keras.layers.serialize(self.preprocessor)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.layers.deserialize(config["backbone"])
        # Configs saved before the preprocessor have none: no tokenizer.
        if isinstance(config.get("preprocessor"), dict):
            config["preprocessor"] = keras.layers.deserialize(
                config["preprocessor"]
            )
        return cls(**config)

    def spactor_config(self):
        """The SpacTor-only part of the config (no backbone, no base keys,
        no preprocessor: a preset keeps it in its own file)."""
        config = self.get_config()
        for key in ("backbone", "preprocessor", "name", "trainable", "dtype"):
            config.pop(key, None)
        return config
