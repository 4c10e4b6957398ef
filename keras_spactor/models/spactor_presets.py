"""SpacTor-T5 architectures, randomly initialised for pre-training.

T5 v1.1 shapes (gated-GELU, untied embeddings, no dropout), from the T5 v1.1
checkpoints' configs; `tiny` and `mini` are this project's own sizes (tests
and the offline demo; pre-training experiments on a CPU).
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
    "spactor_t5_mini": {
        "description": "4+4 layers, width 128: pre-training experiments "
        "that finish on a laptop CPU.",
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
