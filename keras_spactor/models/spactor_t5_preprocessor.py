"""`SpacTorT5Preprocessor`: the one owner of the ids, the lengths and the
batch format that the pipeline, the model and its checks share."""

import sys

import keras
import keras_hub
import numpy as np

from keras_spactor.data import vocabulary as data_vocabulary
from keras_spactor.data.span_lengths import max_noise_spans
from keras_spactor.data.span_lengths import span_corruption_lengths

# Not keras-hub's `preprocessor.json`: keras-hub's `T5Seq2SeqLM.from_preset`
# reads that file and fails on a class it cannot import (keras-hub alone).
PREPROCESSOR_CONFIG_FILE = "spactor_preprocessor.json"
# The batch's `x`, keras-hub's T5 inputs.
MODEL_INPUT_KEYS = (
    "encoder_token_ids",
    "encoder_padding_mask",
    "decoder_token_ids",
    "decoder_padding_mask",
)


class _NumpyOps:
    pad = staticmethod(np.pad)
    not_equal = staticmethod(np.not_equal)

    @staticmethod
    def ids(x):
        return np.asarray(x).astype("int32")

    @staticmethod
    def float32(x):
        return np.asarray(x).astype("float32")


class _TensorFlowOps:
    def __init__(self, tf):
        self.pad = tf.pad
        self.not_equal = tf.not_equal
        self.ids = tf.convert_to_tensor
        self.float32 = lambda x: tf.cast(x, tf.float32)


def _ops_for(array):
    # TensorFlow only if already imported: the model works without it.
    tf = sys.modules.get("tensorflow")
    if tf is not None and tf.is_tensor(array):
        return _TensorFlowOps(tf)
    return _NumpyOps


def model_batch(inputs, targets, pad_token_id=data_vocabulary.PAD_ID):
    """Padded span-corruption rows -> keras-hub's `(x, y, sample_weight)`.

    The one definition of a `SpacTorT5` batch: numpy arrays in, numpy
    arrays out; TensorFlow tensors (in a `tf.data` map) in, tensors out.

    Args:
        inputs: int `[batch, inputs_length]`, encoder ids, pad-padded.
        targets: int `[batch, targets_length]`, span targets with EOS,
            pad-padded.
        pad_token_id: int. T5's decoder also starts with it.

    Returns:
        `x` (`encoder_token_ids`, `encoder_padding_mask`,
        `decoder_token_ids` = `[pad] + targets[:-1]`, `decoder_padding_mask`),
        `y` (the targets) and `sample_weight` (float32, 1 off padding).

    Example:
    ```python
    x, y, sample_weight = model_batch(inputs, targets)
    ```
    """
    ops = _ops_for(inputs)
    inputs, targets = ops.ids(inputs), ops.ids(targets)
    not_padding = ops.not_equal(targets, pad_token_id)
    x = {
        "encoder_token_ids": inputs,
        "encoder_padding_mask": ops.not_equal(inputs, pad_token_id),
        "decoder_token_ids": ops.pad(
            targets[:, :-1], [[0, 0], [1, 0]], constant_values=pad_token_id
        ),
        "decoder_padding_mask": not_padding,
    }
    return x, targets, ops.float32(not_padding)


@keras.saving.register_keras_serializable(package="keras_spactor")
class SpacTorT5Preprocessor(keras_hub.models.Preprocessor):
    """The tokenizer, ids, lengths and batch format of SpacTor pre-training.

    One object that the input pipeline (`keras_spactor.data`), the model
    (`SpacTorT5.preprocessor`) and the model's batch checks all read: the
    pad, EOS, mask and sentinel ids come from the tokenizer, the targets
    length from T5's span-corruption arithmetic, and `model_batch` builds
    the batch. `SpacTorT5.save_to_preset` writes it (its config and the
    tokenizer's assets), `SpacTorT5.from_preset` and
    `keras.saving.load_model` restore it with the model.

    Calling it on padded span-corruption rows,
    `preprocessor({"inputs": ..., "targets": ...})`, gives the model's
    `(x, y, sample_weight)`.

    Args:
        tokenizer: a `keras_hub.models.T5Tokenizer` whose last pieces are
            T5's sentinels, `<extra_id_0>` last.
        inputs_length: int >= 2. Encoder length, EOS included.
        noise_density: float in (0, 1). Fraction of noise tokens.
        mean_noise_span_length: float >= 1.

    Example:
    ```python
    tokenizer = keras_spactor.data.default_vocabulary()
    preprocessor = keras_spactor.models.SpacTorT5Preprocessor(
        tokenizer, inputs_length=128
    )
    preprocessor.targets_length  # 29
    preprocessor.num_sentinels  # 100
    model = keras_spactor.SpacTorT5.from_preset(
        "spactor_t5_tiny", preprocessor=preprocessor
    )
    dataset = keras_spactor.data.pretraining_dataset(
        "builtin:python-docs", model.preprocessor, batch_size=8
    )
    ```
    """

    backbone_cls = keras_hub.models.T5Backbone
    tokenizer_cls = keras_hub.models.T5Tokenizer

    def __init__(
        self,
        tokenizer,
        inputs_length=512,
        noise_density=0.15,
        mean_noise_span_length=3.0,
        **kwargs,
    ):
        kwargs.setdefault("config_file", PREPROCESSOR_CONFIG_FILE)
        super().__init__(**kwargs)
        self.tokenizer = tokenizer
        self.inputs_length = int(inputs_length)
        self.noise_density = float(noise_density)
        self.mean_noise_span_length = float(mean_noise_span_length)
        # Checks the lengths and noise settings too.
        self.tokens_length, self.targets_length = span_corruption_lengths(
            self.inputs_length,
            self.noise_density,
            self.mean_noise_span_length,
        )
        self.max_noise_spans = max_noise_spans(
            self.inputs_length,
            self.noise_density,
            self.mean_noise_span_length,
        )
        self._vocabulary_ids = None

    # ------------------------------------------------------------------
    # The ids, read from the tokenizer once its vocabulary is loaded (a
    # model restored by Keras loads it after building this object).

    @property
    def has_vocabulary(self):
        """Whether the tokenizer's vocabulary is loaded (ids readable)."""
        return getattr(self.tokenizer, "proto", None) is not None

    def _ids(self):
        proto = getattr(self.tokenizer, "proto", None)
        cached = self._vocabulary_ids
        if cached is None or cached["proto"] is not proto:
            tokenizer = self.tokenizer
            cached = {
                "proto": proto,
                "vocabulary_size": int(tokenizer.vocabulary_size()),
                "pad_token_id": int(tokenizer.pad_token_id),
                "eos_token_id": int(tokenizer.end_token_id),
                "mask_token_id": data_vocabulary.mask_token_id(tokenizer),
                "num_sentinels": data_vocabulary.count_sentinels(tokenizer),
            }
            # A plain attribute: not a Keras-tracked dict.
            object.__setattr__(self, "_vocabulary_ids", cached)
        return cached

    @property
    def vocabulary_size(self):
        """The tokenizer's number of pieces, sentinels included."""
        return self._ids()["vocabulary_size"]

    @property
    def pad_token_id(self):
        """`<pad>`: padding, and the decoder's start id."""
        return self._ids()["pad_token_id"]

    @property
    def eos_token_id(self):
        """`</s>`, ending `inputs` and `targets`."""
        return self._ids()["eos_token_id"]

    @property
    def mask_token_id(self):
        """The tokenizer's `<mask>` piece, else its first spare id."""
        return self._ids()["mask_token_id"]

    @property
    def num_sentinels(self):
        """The number of `<extra_id_N>` pieces ending the vocabulary."""
        return self._ids()["num_sentinels"]

    @property
    def sentinel_ids(self):
        """Ids of `<extra_id_0>`, `<extra_id_1>`, ...: counting down from
        the last piece."""
        last = self.vocabulary_size - 1
        return [last - index for index in range(self.num_sentinels)]

    def check_sentinels(self):
        """Raise a `ValueError` unless the vocabulary has a sentinel for
        each noise span of an `inputs_length` example."""
        if self.max_noise_spans > self.num_sentinels:
            raise ValueError(
                f"inputs_length={self.inputs_length} gives up to "
                f"{self.max_noise_spans} noise spans, more than the "
                f"{self.num_sentinels} sentinels."
            )

    # ------------------------------------------------------------------
    # The batch.

    def model_batch(self, inputs, targets):
        """Padded rows -> `(x, y, sample_weight)`; see `model_batch`."""
        return model_batch(inputs, targets, self.pad_token_id)

    def call(self, x, y=None, sample_weight=None):
        """`{"inputs", "targets"}` rows -> `(x, y, sample_weight)`."""
        return self.model_batch(x["inputs"], x["targets"])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "inputs_length": self.inputs_length,
                "noise_density": self.noise_density,
                "mean_noise_span_length": self.mean_noise_span_length,
            }
        )
        return config

    @classmethod
    def from_preset(
        cls, preset, config_file=PREPROCESSOR_CONFIG_FILE, **kwargs
    ):
        """A preprocessor from a preset: `SpacTorT5.save_to_preset`'s (its
        `spactor_preprocessor.json`), else one with the default lengths
        around the preset's tokenizer (e.g. `"t5_1.1_base"`).

        Example:
        ```python
        preprocessor = SpacTorT5Preprocessor.from_preset("./my_preset")
        ```
        """
        return super().from_preset(preset, config_file=config_file, **kwargs)


def as_preprocessor(
    tokenizer_or_preprocessor,
    inputs_length=None,
    noise_density=None,
    mean_noise_span_length=None,
):
    """A `SpacTorT5Preprocessor` from a tokenizer, or the one given.

    For functions that took a tokenizer before the preprocessor existed:
    a tokenizer gets a preprocessor with the given settings (defaults for
    `None`); a preprocessor is returned as it is, and a setting given here
    must then equal its own.

    Args:
        tokenizer_or_preprocessor: a `keras_hub.models.T5Tokenizer` or a
            `SpacTorT5Preprocessor`.
        inputs_length: int or `None`.
        noise_density: float or `None`.
        mean_noise_span_length: float or `None`.

    Returns:
        A `SpacTorT5Preprocessor`.

    Raises:
        ValueError: for `None` (e.g. the `preprocessor` of a model saved
            without a tokenizer), or settings that contradict the
            preprocessor's.

    Example:
    ```python
    preprocessor = as_preprocessor(tokenizer, inputs_length=128)
    ```
    """
    settings = {
        "inputs_length": inputs_length,
        "noise_density": noise_density,
        "mean_noise_span_length": mean_noise_span_length,
    }
    given = {key: value for key, value in settings.items() if value is not None}
    if isinstance(tokenizer_or_preprocessor, SpacTorT5Preprocessor):
        preprocessor = tokenizer_or_preprocessor
        for key, value in given.items():
            if float(value) != float(getattr(preprocessor, key)):
                raise ValueError(
                    f"{key}={value} contradicts the preprocessor's "
                    f"{key}={getattr(preprocessor, key)}. Leave it unset, or "
                    "build another SpacTorT5Preprocessor."
                )
        return preprocessor
    if tokenizer_or_preprocessor is None:
        raise ValueError(
            "No tokenizer: pass a keras_hub.models.T5Tokenizer or a "
            "SpacTorT5Preprocessor. (A model saved without a tokenizer has "
            "no `preprocessor`; give it one with "
            "`model.preprocessor = SpacTorT5Preprocessor(tokenizer)`.)"
        )
    return SpacTorT5Preprocessor(tokenizer_or_preprocessor, **given)


def model_preprocessor(preprocessor=None, tokenizer=None):
    """`SpacTorT5`'s preprocessor from its `preprocessor` and `tokenizer`
    arguments: `tokenizer`, if given, replaces the preprocessor's own."""
    if preprocessor is not None:
        preprocessor = as_preprocessor(preprocessor)
    if tokenizer is None or (
        preprocessor is not None and preprocessor.tokenizer is tokenizer
    ):
        return preprocessor
    return replace_tokenizer(preprocessor, tokenizer)


def replace_tokenizer(preprocessor, tokenizer):
    """A preprocessor of `tokenizer` with `preprocessor`'s settings (the
    defaults without one); `None` for no tokenizer."""
    if tokenizer is None:
        return None
    if preprocessor is None:
        return SpacTorT5Preprocessor(tokenizer)
    config = preprocessor.get_config()
    config["tokenizer"] = tokenizer
    return SpacTorT5Preprocessor.from_config(config)


def resolve_ids(preprocessor, **ids):
    """`SpacTorT5`'s ids: each one given, else the preprocessor's (once its
    vocabulary is loaded), else T5's (`vocabulary_size` and `mask_token_id`
    are then left to the model: `None`).

    Args:
        preprocessor: a `SpacTorT5Preprocessor` or `None`.
        **ids: `vocabulary_size`, `num_sentinels`, `mask_token_id`,
            `eos_token_id`, `pad_token_id`, each an int or `None`.

    Returns:
        A dict of the same keys.
    """
    t5_defaults = {
        "num_sentinels": data_vocabulary.NUM_SENTINELS,
        "eos_token_id": data_vocabulary.EOS_ID,
        "pad_token_id": data_vocabulary.PAD_ID,
    }
    resolved = {}
    for key, value in ids.items():
        if value is None and preprocessor is not None:
            if preprocessor.has_vocabulary:
                value = getattr(preprocessor, key)
        if value is None:
            value = t5_defaults.get(key)
        resolved[key] = None if value is None else int(value)
    return resolved
