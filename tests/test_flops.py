"""`train_step_flops` against counts derived by hand, matmul by matmul."""

import keras
import keras_hub
import pytest

import keras_spactor
from keras_spactor.flops import train_step_flops

# Heads narrower than hidden_dim // num_heads, so that the attention's inner
# width (NUM_HEADS * KEY_VALUE_DIM = 16) differs from the model width (32).
VOCABULARY_SIZE = 200
EMBEDDING_ROWS = 208
NUM_LAYERS = 2
NUM_HEADS = 2
KEY_VALUE_DIM = 8
HIDDEN_DIM = 32
INTERMEDIATE_DIM = 64


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(1)
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=EMBEDDING_ROWS,
        num_layers=NUM_LAYERS,
        num_heads=NUM_HEADS,
        hidden_dim=HIDDEN_DIM,
        intermediate_dim=INTERMEDIATE_DIM,
        key_value_dim=KEY_VALUE_DIM,
        dropout=0.0,
        tie_embedding_weights=False,
    )
    return keras_spactor.SpacTorT5(
        backbone, vocabulary_size=VOCABULARY_SIZE, generator_num_layers=1
    )


def matmul(rows, inputs, outputs):
    """FLOPs of a (rows x inputs) @ (inputs x outputs) product."""
    return 2 * rows * inputs * outputs


def hand_counted_sc_step(batch, inputs_length, targets_length):
    """Forward + backward FLOPs of an SC step, listing every matmul."""
    d, f = HIDDEN_DIM, INTERMEDIATE_DIM
    heads, kv = NUM_HEADS, KEY_VALUE_DIM
    inner = heads * kv
    enc = batch * inputs_length  # encoder tokens
    dec = batch * targets_length  # decoder tokens
    # One head's (queries x kv) @ (kv x keys), then (queries x keys) @
    # (keys x kv), for every sequence and head.
    enc_queries = batch * heads * inputs_length
    dec_queries = batch * heads * targets_length
    gated_ffn = [(enc, d, f), (enc, d, f), (enc, f, d)]
    encoder_layer = [
        (enc, d, inner),  # Q
        (enc, d, inner),  # K
        (enc, d, inner),  # V
        (enc_queries, kv, inputs_length),  # Q K^T
        (enc_queries, inputs_length, kv),  # softmax(.) V
        (enc, inner, d),  # O
    ] + gated_ffn
    decoder_layer = [
        # Causal self-attention over the targets.
        (dec, d, inner),  # Q
        (dec, d, inner),  # K
        (dec, d, inner),  # V
        (dec_queries, kv, targets_length),
        (dec_queries, targets_length, kv),
        (dec, inner, d),  # O
        # Cross-attention: queries from the decoder, keys and values
        # projected from the encoder's output.
        (dec, d, inner),  # Q
        (enc, d, inner),  # K
        (enc, d, inner),  # V
        (dec_queries, kv, inputs_length),
        (dec_queries, inputs_length, kv),
        (dec, inner, d),  # O
        (dec, d, f),
        (dec, d, f),
        (dec, f, d),
    ]
    lm_head = matmul(dec, d, EMBEDDING_ROWS)
    forward = (
        NUM_LAYERS * sum(matmul(*shape) for shape in encoder_layer)
        + NUM_LAYERS * sum(matmul(*shape) for shape in decoder_layer)
        + lm_head
    )
    return 3 * forward


@pytest.mark.parametrize(
    "batch, inputs_length, targets_length", [(2, 12, 5), (3, 40, 9)]
)
def test_sc_step_flops_match_a_matmul_by_matmul_count(
    model, batch, inputs_length, targets_length
):
    assert train_step_flops(
        model, batch, inputs_length, targets_length, hybrid=False
    ) == hand_counted_sc_step(batch, inputs_length, targets_length)


def test_flops_growth_with_inputs_length_at_fixed_targets(model):
    """Cross-attention K and V run over the encoder's tokens.

    With the targets fixed, one more input position per sequence adds, per
    layer and per sequence (forward, x3 for the step):
    - encoder: 4 projections and 3 FFN matrices of one token, and
      scores + mixing against L+1 keys for L+1 queries instead of L x L;
    - decoder cross-attention: the K and V projections of one more encoder
      token, and scores + mixing of the T decoder queries against one more
      key.
    The decoder's Q and O projections, its self-attention, FFN and the LM
    head do not depend on the inputs length.
    """
    batch, length, targets = 4, 20, 6
    d, f, inner = HIDDEN_DIM, INTERMEDIATE_DIM, NUM_HEADS * KEY_VALUE_DIM
    encoder = (
        4 * 2 * d * inner
        + 3 * 2 * d * f
        + 2 * 2 * ((length + 1) ** 2 - length**2) * inner
    )
    cross_attention = 2 * 2 * d * inner + 2 * 2 * targets * inner
    expected = 3 * batch * NUM_LAYERS * (encoder + cross_attention)

    def flops(inputs_length):
        return train_step_flops(
            model, batch, inputs_length, targets, hybrid=False
        )

    assert flops(length + 1) - flops(length) == expected
