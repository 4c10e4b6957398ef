"""SpacTor-T5 architectures, randomly initialised for pre-training.

T5 v1.1 shapes (gated-GELU, untied embeddings, no dropout), from the T5 v1.1
checkpoints' configs; `nano`, `mini` and `tiny` are this project's own sizes
(guides' small runs, tests and the offline demo, experiments on a CPU).

Each entry of `SPACTOR_PRESETS` holds a `description`, the backbone's
`params` at T5's 32,128-row embedding (`T5Backbone.count_params()`, the
number keras-hub's preset metadata gives) and the `backbone` shape; the
`T5_V1_1` settings complete it. `SpacTorT5.presets` shows them in keras-hub's
`presets` layout.
"""

T5_V1_1 = {
    "activation": "gelu",
    "use_gated_activation": True,
    "tie_embedding_weights": False,
    "dropout": 0.0,
    "layer_norm_epsilon": 1e-6,
}

# T5's SentencePiece vocabulary has 32,100 pieces (with 100 sentinels) in a
# 32,128-row embedding; the first spare row (32100) is SpacTor's mask id.
T5_VOCABULARY_SIZE = 32100
T5_EMBEDDING_ROWS = 32128

SPACTOR_PRESETS = {
    "spactor_t5_nano": {
        "description": "2+2 layers, width 64: guides' small runs and "
        "quick experiments (seconds per hundred steps on a CPU).",
        "params": 4_309_888,
        "backbone": {
            "num_layers": 2,
            "num_heads": 2,
            "hidden_dim": 64,
            "intermediate_dim": 128,
            "key_value_dim": 32,
        },
    },
    "spactor_t5_mini": {
        "description": "4+4 layers, width 128: pre-training experiments "
        "that finish on a laptop CPU.",
        "params": 9_800_704,
        "backbone": {
            "num_layers": 4,
            "num_heads": 4,
            "hidden_dim": 128,
            "intermediate_dim": 256,
            "key_value_dim": 32,
        },
    },
    "spactor_t5_tiny": {
        "description": "4+4 layers, width 256: tests and the offline demo.",
        "params": 25_892_608,
        "backbone": {
            "num_layers": 4,
            "num_heads": 4,
            "hidden_dim": 256,
            "intermediate_dim": 1024,
            "key_value_dim": 64,
        },
    },
    "spactor_t5_small": {
        "description": "T5 v1.1 small shape: 8+8 layers, width 512.",
        "params": 76_961_152,
        "backbone": {
            "num_layers": 8,
            "num_heads": 6,
            "hidden_dim": 512,
            "intermediate_dim": 1024,
            "key_value_dim": 64,
        },
    },
    "spactor_t5_base": {
        "description": "T5 v1.1 base shape: 12+12 layers, width 768.",
        "params": 247_577_856,
        "backbone": {
            "num_layers": 12,
            "num_heads": 12,
            "hidden_dim": 768,
            "intermediate_dim": 2048,
            "key_value_dim": 64,
        },
    },
    "spactor_t5_large": {
        "description": "T5 v1.1 large shape: 24+24 layers, width 1024.",
        "params": 783_150_080,
        "backbone": {
            "num_layers": 24,
            "num_heads": 16,
            "hidden_dim": 1024,
            "intermediate_dim": 2816,
            "key_value_dim": 64,
        },
    },
}


def embedding_rows(vocabulary_size, multiple=128):
    """Embedding rows for a tokenizer: a spare row, rounded up (TPU-friendly).

    T5: 32,100 pieces → 32,128 rows.
    """
    return -(-(vocabulary_size + 1) // multiple) * multiple


def backbone_config(name, vocabulary_size=T5_VOCABULARY_SIZE):
    """`keras_hub.models.T5Backbone` arguments of a built-in preset.

    Args:
        name: a key of `SPACTOR_PRESETS`.
        vocabulary_size: int. The tokenizer's pieces; the embedding gets
            `embedding_rows(vocabulary_size)` rows.

    Returns:
        A dict, e.g. `keras_hub.models.T5Backbone(**backbone_config(name))`.
    """
    config = {"vocabulary_size": embedding_rows(vocabulary_size)}
    config.update(T5_V1_1)
    config.update(SPACTOR_PRESETS[name]["backbone"])
    return config


def keras_hub_presets():
    """The built-in presets in the layout of keras-hub's `presets`.

    Returns:
        `{name: {"metadata": {"description", "params"}, "config": ...}}`,
        `config` being the backbone's `backbone_config(name)` (T5's
        vocabulary).
    """
    return {
        name: {
            "metadata": {
                "description": entry["description"],
                "params": entry.get("params"),
            },
            "config": backbone_config(name),
        }
        for name, entry in SPACTOR_PRESETS.items()
    }
