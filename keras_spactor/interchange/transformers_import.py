"""Build keras-hub's `T5Backbone` and `T5Tokenizer` from a transformers T5
checkpoint: a local directory or `hf://owner/name` on the Hugging Face Hub.

Original T5 (ReLU, tied embeddings with the d_model**-0.5 scaling of the
output), T5 v1.1 and FLAN-T5 (gated GELU in its tanh approximation, untied)
and the `t5-efficient` shapes map onto `T5Backbone` exactly. What it cannot
express is refused with a one-line error rather than imported wrongly:
encoder and decoder of different depths, and relative position buckets or
a maximum distance other than keras-hub's fixed 32 and 128.
"""

import json
import os

import numpy as np

from keras_spactor.interchange import activations
from keras_spactor.interchange import safetensors_io
from keras_spactor.interchange.weight_names import weight_names

HF_PREFIX = "hf://"
TOKENIZER_FILE = "spiece.model"
# keras-hub's `T5MultiHeadAttention` fixes these.
KERAS_HUB_BUCKETS = 32
KERAS_HUB_MAX_DISTANCE = 128
_MODEL_TYPES = ("t5", "mt5")
# What a snapshot of a transformers T5 needs (no PyTorch or Flax weights).
_DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", TOKENIZER_FILE]


def _read_json(directory, name="config.json"):
    path = os.path.join(directory, name)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def is_transformers_directory(path):
    """Whether `path` is a local transformers T5 checkpoint directory."""
    if not isinstance(path, (str, os.PathLike)) or not os.path.isdir(path):
        return False
    config = _read_json(path)
    return isinstance(config, dict) and "model_type" in config


def _hub_repo(preset):
    repo = preset[len(HF_PREFIX) :]
    if repo.count("/") != 1:
        raise ValueError(f"{preset!r}: a Hub checkpoint is 'hf://owner/name'.")
    return repo


def is_transformers_hub_checkpoint(preset):
    """Whether `preset` is `hf://owner/name` of a transformers checkpoint
    (its `config.json` has a `model_type`; keras-hub's own presets on the
    Hub have none). Fetches that one file."""
    if not isinstance(preset, str) or not preset.startswith(HF_PREFIX):
        return False
    import huggingface_hub

    path = huggingface_hub.hf_hub_download(_hub_repo(preset), "config.json")
    with open(path) as f:
        return "model_type" in json.load(f)


def transformers_checkpoint_directory(preset):
    """The local directory of a transformers T5 checkpoint, or `None`.

    Args:
        preset: a local directory, or `hf://owner/name` (downloaded with
            `huggingface_hub.snapshot_download`, which honours
            `HF_ENDPOINT` and `HF_HUB_OFFLINE`; safetensors weights,
            JSON files and `spiece.model` only).

    Returns:
        A directory path, or `None` when `preset` is something else (a
        keras-hub preset, a built-in name).
    """
    if is_transformers_directory(preset):
        return os.fspath(preset)
    if is_transformers_hub_checkpoint(preset):
        import huggingface_hub

        return huggingface_hub.snapshot_download(
            _hub_repo(preset), allow_patterns=_DOWNLOAD_PATTERNS
        )
    return None


def backbone_arguments(config):
    """`T5Backbone` arguments for a transformers `config.json` (a dict).

    Raises:
        ValueError: for a checkpoint `T5Backbone` cannot hold exactly.
    """
    model_type = config.get("model_type")
    if model_type not in _MODEL_TYPES:
        raise ValueError(
            f"model_type {model_type!r} is not a T5 ({_MODEL_TYPES})."
        )
    num_layers = config.get("num_layers", 6)
    decoder_layers = config.get("num_decoder_layers") or num_layers
    if decoder_layers != num_layers:
        raise ValueError(
            f"The checkpoint has {num_layers} encoder and {decoder_layers} "
            "decoder layers; keras-hub's T5Backbone has as many of each."
        )
    buckets = config.get("relative_attention_num_buckets", 32)
    max_distance = config.get("relative_attention_max_distance", 128)
    if (buckets, max_distance) != (KERAS_HUB_BUCKETS, KERAS_HUB_MAX_DISTANCE):
        raise ValueError(
            f"The checkpoint's relative position bias has {buckets} buckets "
            f"up to distance {max_distance}; keras-hub's T5Backbone fixes "
            f"{KERAS_HUB_BUCKETS} and {KERAS_HUB_MAX_DISTANCE}."
        )
    act, gated = activations.dense_act_fn(
        config.get("feed_forward_proj", "relu")
    )
    hidden_dim = config.get("d_model", 512)
    num_heads = config.get("num_heads", 8)
    return {
        "vocabulary_size": config.get("vocab_size", 32128),
        "num_layers": num_layers,
        "num_heads": num_heads,
        "hidden_dim": hidden_dim,
        "intermediate_dim": config.get("d_ff", 2048),
        "key_value_dim": config.get("d_kv", hidden_dim // num_heads),
        "dropout": config.get("dropout_rate", 0.1),
        "activation": activations.keras_activation(act),
        "use_gated_activation": gated,
        "layer_norm_epsilon": config.get("layer_norm_epsilon", 1e-6),
        "tie_embedding_weights": _scales_tied_output(config),
    }


def _scales_tied_output(config):
    # transformers 5 stores `tie_word_embeddings: true` for every T5 and
    # says whether the tied output is scaled in `scale_decoder_outputs`;
    # before, `tie_word_embeddings` meant both (default true).
    if "scale_decoder_outputs" in config:
        return bool(config["scale_decoder_outputs"])
    return bool(config.get("tie_word_embeddings", True))


def _input_embedding(tensors):
    for name in ("shared.weight", "encoder.embed_tokens.weight"):
        if name in tensors:
            return tensors[name]
    raise ValueError("The checkpoint has no shared.weight (input embedding).")


def _checkpoint_arrays(tensors, backbone):
    """`{name: array}` for `weight_names(backbone)`, checked."""
    tensors = dict(tensors)
    shared = _input_embedding(tensors)
    tensors["shared.weight"] = shared
    lm_head = tensors.get("lm_head.weight")
    if backbone.tie_embedding_weights:
        if lm_head is not None and not np.array_equal(lm_head, shared):
            raise ValueError(
                "The checkpoint scales a tied output (tie_word_embeddings) "
                "but its lm_head.weight differs from shared.weight."
            )
    elif lm_head is None:
        # Unscaled yet shared (transformers 5's LongT5-style configs): an
        # untied copy computes the same.
        tensors["lm_head.weight"] = shared
    expected = {name for name, _, _ in weight_names(backbone)}
    missing = sorted(expected - set(tensors))
    if missing:
        raise ValueError(
            f"The checkpoint lacks {len(missing)} weights, e.g. {missing[:3]}."
        )
    # Copies of the shared embedding transformers may store as well.
    aliases = {
        "encoder.embed_tokens.weight",
        "decoder.embed_tokens.weight",
        "lm_head.weight",
    }
    unexpected = sorted(set(tensors) - expected - aliases)
    if unexpected:
        raise ValueError(
            f"The checkpoint has {len(unexpected)} weights a T5Backbone has "
            f"no place for, e.g. {unexpected[:3]}."
        )
    return tensors


def assign_transformers_weights(backbone, tensors):
    """Assign a transformers T5's `{name: array}` to a `T5Backbone`."""
    tensors = _checkpoint_arrays(tensors, backbone)
    for name, variable, transposed in weight_names(backbone):
        array = tensors[name].T if transposed else tensors[name]
        if tuple(array.shape) != tuple(variable.shape):
            raise ValueError(
                f"{name} has shape {array.shape}; the T5Backbone's "
                f"{variable.path} has {tuple(variable.shape)}."
            )
        variable.assign(array.astype(variable.dtype))


def _sentencepiece_proto(directory):
    path = os.path.join(directory, TOKENIZER_FILE)
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        proto = f.read()
    config = _read_json(directory, "tokenizer_config.json") or {}
    extra_ids = config.get("extra_ids", 100)
    from sentencepiece import sentencepiece_model_pb2

    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString(proto)
    pieces = {p.piece for p in model.pieces}
    if extra_ids and "<extra_id_0>" not in pieces:
        # transformers' T5Tokenizer appends `extra_ids` sentinels after the
        # SentencePiece pieces, `<extra_id_0>` last (T5: ids 32000-32099);
        # as pieces of the proto they get the same ids here.
        user_defined = sentencepiece_model_pb2.ModelProto.SentencePiece
        for index in reversed(range(extra_ids)):
            piece = model.pieces.add()
            piece.piece = f"<extra_id_{index}>"
            piece.score = 0.0
            piece.type = user_defined.USER_DEFINED
    return model.SerializeToString()


def load_transformers_tokenizer(directory):
    """keras-hub's `T5Tokenizer` for a transformers checkpoint's
    `spiece.model`, with `<extra_id_N>` at transformers' ids; `None` if the
    directory has no `spiece.model`."""
    import keras_hub

    proto = _sentencepiece_proto(directory)
    if proto is None:
        return None
    return keras_hub.models.T5Tokenizer(proto=proto)


def load_transformers_checkpoint(preset, load_weights=True, dtype=None):
    """A keras-hub `T5Backbone` and `T5Tokenizer` from a transformers T5.

    Args:
        preset: a local transformers checkpoint directory or
            `hf://owner/name` (e.g. `"hf://google/flan-t5-small"`).
        load_weights: bool. If `False`, the architecture only.
        dtype: the backbone's dtype policy.

    Returns:
        `(backbone, tokenizer)`; `tokenizer` is `None` when the checkpoint
        has no `spiece.model`. `keras_hub.models.T5Seq2SeqLM(backbone,
        preprocessor)` then generates as transformers does.

    Example:
    ```python
    backbone, tokenizer = load_transformers_checkpoint(
        "hf://google/flan-t5-small"
    )
    ```
    """
    import keras_hub

    directory = transformers_checkpoint_directory(preset)
    if directory is None:
        raise ValueError(f"{preset!r} is not a transformers T5 checkpoint.")
    config = _read_json(directory)
    backbone = keras_hub.models.T5Backbone(
        **backbone_arguments(config), dtype=dtype
    )
    if load_weights:
        tensors = safetensors_io.load_directory(directory)
        assign_transformers_weights(backbone, tensors)
    return backbone, load_transformers_tokenizer(directory)
