"""Export a T5 to a directory transformers' `T5ForConditionalGeneration`
and `AutoTokenizer` load."""

import json
import os

import numpy as np

from keras_spactor.interchange import activations
from keras_spactor.interchange import safetensors_io
from keras_spactor.interchange.weight_names import weight_names

TOKENIZER_FILE = "spiece.model"


def _backbone_and_tokenizer(preset_or_model):
    import keras_hub

    if isinstance(preset_or_model, (str, os.PathLike)):
        preset = os.fspath(preset_or_model)
        backbone = keras_hub.models.T5Backbone.from_preset(preset)
        try:
            tokenizer = keras_hub.models.T5Tokenizer.from_preset(preset)
        except Exception:
            tokenizer = None
        return backbone, tokenizer
    if isinstance(preset_or_model, keras_hub.models.T5Backbone):
        return preset_or_model, None
    # A `SpacTorT5` or a `T5Seq2SeqLM`.
    backbone = getattr(preset_or_model, "backbone", None)
    if not isinstance(backbone, keras_hub.models.T5Backbone):
        raise ValueError(
            "export_to_transformers takes a preset directory, a SpacTorT5, "
            "a keras_hub T5Seq2SeqLM or a T5Backbone; got "
            f"{type(preset_or_model).__name__}."
        )
    tokenizer = getattr(preset_or_model, "tokenizer", None)
    preprocessor = getattr(preset_or_model, "preprocessor", None)
    if tokenizer is None and preprocessor is not None:
        tokenizer = preprocessor.tokenizer
    return backbone, tokenizer


def _position_bias_settings(backbone):
    attention = backbone.encoder_transformer_layers[0].self_attention
    return (
        attention.relative_attention_buckets,
        attention.relative_attention_max_distance,
    )


def transformers_config(backbone, pad_token_id=0, eos_token_id=1):
    """transformers' `T5Config` (as a dict) for a `T5Backbone`."""
    buckets, max_distance = _position_bias_settings(backbone)
    key_value_dim = backbone.key_value_dim or (
        backbone.hidden_dim // backbone.num_heads
    )
    return {
        "architectures": ["T5ForConditionalGeneration"],
        "model_type": "t5",
        "vocab_size": backbone.vocabulary_size,
        "d_model": backbone.hidden_dim,
        "d_kv": key_value_dim,
        "d_ff": backbone.intermediate_dim,
        "num_layers": backbone.num_layers,
        "num_decoder_layers": backbone.num_layers,
        "num_heads": backbone.num_heads,
        "relative_attention_num_buckets": buckets,
        "relative_attention_max_distance": max_distance,
        "dropout_rate": backbone.dropout,
        "layer_norm_epsilon": backbone.layer_norm_epsilon,
        "initializer_factor": 1.0,
        "feed_forward_proj": activations.feed_forward_proj(
            backbone.activation, backbone.use_gated_activation
        ),
        # Tied: the output reuses the input embedding, its input scaled by
        # d_model**-0.5 (as keras-hub's T5Seq2SeqLM does); untied: an
        # `lm_head.weight` of its own and no scaling.
        "tie_word_embeddings": bool(backbone.tie_embedding_weights),
        "is_encoder_decoder": True,
        "use_cache": True,
        "pad_token_id": pad_token_id,
        "eos_token_id": eos_token_id,
        # T5 starts decoding from the pad id (keras-hub's preprocessor too).
        "decoder_start_token_id": pad_token_id,
        "torch_dtype": "float32",
    }


def transformers_weights(backbone):
    """`{transformers name: float32 numpy array}` for a `T5Backbone`."""
    tensors = {}
    for name, variable, transposed in weight_names(backbone):
        array = np.asarray(variable.numpy(), dtype="float32")
        tensors[name] = np.ascontiguousarray(array.T if transposed else array)
    return tensors


def _write_json(directory, name, content):
    with open(os.path.join(directory, name), "w") as f:
        json.dump(content, f, indent=2, sort_keys=True)
        f.write("\n")


def _write_tokenizer(directory, tokenizer, model_max_length):
    vocabulary = tokenizer.get_vocabulary()
    # Sentinels are pieces of our SentencePiece model already, at the ids
    # the model was trained with: `extra_ids=0` keeps transformers from
    # appending 100 more after them.
    sentinels = []
    index = 0
    while f"<extra_id_{index}>" in vocabulary:
        sentinels.append(f"<extra_id_{index}>")
        index += 1
    special = {
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "additional_special_tokens": sentinels,
    }
    with open(os.path.join(directory, TOKENIZER_FILE), "wb") as f:
        f.write(tokenizer.proto)
    config = dict(special)
    config.update(
        {
            "tokenizer_class": "T5Tokenizer",
            "extra_ids": 0,
            "model_max_length": model_max_length,
        }
    )
    _write_json(directory, "tokenizer_config.json", config)
    _write_json(directory, "special_tokens_map.json", special)


def export_to_transformers(
    preset_or_model,
    directory,
    max_shard_bytes=safetensors_io.DEFAULT_MAX_SHARD_BYTES,
    model_max_length=512,
):
    """Write a T5 as a transformers checkpoint directory.

    `transformers.T5ForConditionalGeneration.from_pretrained(directory)`
    loads it with no missing or unexpected weights, and
    `transformers.AutoTokenizer.from_pretrained(directory)` loads its
    tokenizer, with `<extra_id_N>` at the ids this model was trained with.
    Written: `config.json`, `generation_config.json`, `model.safetensors`
    (sharded with `model.safetensors.index.json` past `max_shard_bytes`,
    as transformers does), `spiece.model`, `tokenizer_config.json` and
    `special_tokens_map.json`.

    Every embedding row is written, those past the tokenizer's pieces too
    (T5's 32,128 rows for 32,100 pieces; SpacTor's mask id is the first
    such row for T5's vocabulary): the tokenizer never produces them, and
    they keep the export exact. A vocabulary trained by this package has a
    `<mask>` piece (id 3), which transformers sees as an ordinary piece.

    Args:
        preset_or_model: a preset directory (`save_to_preset`'s, e.g.
            `runs/demo/preset`), a `SpacTorT5`, a keras-hub `T5Seq2SeqLM`
            or a `T5Backbone` (no tokenizer then).
        directory: str. Created if needed.
        max_shard_bytes: int. The largest `.safetensors` file written.
        model_max_length: int. The tokenizer's `model_max_length`.

    Returns:
        The list of files written.

    Example:
    ```python
    keras_spactor.export_to_transformers("runs/demo/preset", "runs/demo/hf")
    # then, with transformers and PyTorch:
    # T5ForConditionalGeneration.from_pretrained("runs/demo/hf")
    ```
    """
    backbone, tokenizer = _backbone_and_tokenizer(preset_or_model)
    pad_token_id, eos_token_id = 0, 1
    if tokenizer is not None:
        pad_token_id = int(tokenizer.pad_token_id)
        eos_token_id = int(tokenizer.end_token_id)
    os.makedirs(directory, exist_ok=True)
    config = transformers_config(backbone, pad_token_id, eos_token_id)
    _write_json(directory, "config.json", config)
    _write_json(
        directory,
        "generation_config.json",
        {
            "decoder_start_token_id": pad_token_id,
            "eos_token_id": eos_token_id,
            "pad_token_id": pad_token_id,
        },
    )
    files = ["config.json", "generation_config.json"]
    files += safetensors_io.save_sharded(
        directory, transformers_weights(backbone), max_shard_bytes
    )
    if tokenizer is not None:
        _write_tokenizer(directory, tokenizer, model_max_length)
        files += [
            TOKENIZER_FILE,
            "tokenizer_config.json",
            "special_tokens_map.json",
        ]
    return files
