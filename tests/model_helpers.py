"""Tiny models, batches and backend-neutral gradients for the model tests."""

import keras
import keras_hub
import numpy as np
import tensorflow as tf

import keras_spactor
from keras_spactor.models.t5x_initialization import (
    initialize_embeddings_like_t5x,
)

VOCABULARY_SIZE = 200  # tokenizer pieces: sentinels are 100..199
EMBEDDING_ROWS = 208  # row 200 is the mask id


def tiny_backbone(num_layers=2, tie=False, reinitialize=True):
    """A 2+2-layer, 32-wide T5; embeddings T5X-style unless told not to."""
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=EMBEDDING_ROWS,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        dropout=0.0,
        activation="gelu",
        tie_embedding_weights=tie,
    )
    if reinitialize:
        initialize_embeddings_like_t5x(backbone)
    return backbone


def tiny_model(seed=1, backbone=None, **kwargs):
    """A SpacTorT5 on `backbone` (default: a new `tiny_backbone()`). Tests
    that build several models without training them (rejected arguments,
    one setting against another) share one backbone: building it is the
    slow part (over a second on TensorFlow)."""
    keras.utils.set_random_seed(seed)
    kwargs.setdefault("generator_num_layers", 1)
    return keras_spactor.SpacTorT5(
        tiny_backbone() if backbone is None else backbone,
        vocabulary_size=VOCABULARY_SIZE,
        seed=seed,
        **kwargs,
    )


def span_corruption_like_batch(batch_size=4, length=24, targets=8, seed=0):
    """A batch shaped like the pipeline's: sentinels, EOS and padding."""
    rng = np.random.RandomState(seed)
    sentinel = VOCABULARY_SIZE - 1
    encoder = rng.randint(3, sentinel - 99, size=(batch_size, length))
    encoder[:, 4] = sentinel
    encoder[:, 9] = sentinel - 1
    encoder[:, -4] = 1  # EOS, then padding
    encoder[:, -3:] = 0
    target = rng.randint(3, VOCABULARY_SIZE, size=(batch_size, targets))
    target[:, -1] = 1
    decoder = np.concatenate(
        [np.zeros((batch_size, 1), "int64"), target[:, :-1]], axis=1
    )
    x = {
        "encoder_token_ids": encoder.astype("int32"),
        "encoder_padding_mask": encoder != 0,
        "decoder_token_ids": decoder.astype("int32"),
        "decoder_padding_mask": np.ones_like(decoder, bool),
    }
    return x, target.astype("int32")


def repeated_dataset(x, y):
    return tf.data.Dataset.from_tensors((x, y)).repeat()


def numpy(value):
    return np.array(keras.ops.convert_to_numpy(value))


def numpy_weights(layer):
    return [numpy(v) for v in layer.weights]


def gradients(model, variables, loss_fn):
    """d loss_fn() / d variables, without changing any model state."""
    if keras.backend.backend() == "tensorflow":
        state = [numpy(v) for v in model.non_trainable_variables]
        with tf.GradientTape() as tape:
            loss = loss_fn()
        grads = tape.gradient(
            loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        for variable, value in zip(model.non_trainable_variables, state):
            variable.assign(value)
        return [
            g.numpy() if hasattr(g, "numpy") else np.asarray(g)
            for g in map(tf.convert_to_tensor, grads)
        ]
    import jax

    others = [v for v in model.variables if all(v is not w for w in variables)]

    def f(values):
        mapping = list(zip(variables, values))
        mapping += [(v, v.value) for v in others]
        with keras.StatelessScope(state_mapping=mapping):
            return loss_fn()

    # One compiled program: op-by-op eager gradients of even a tiny T5
    # cost seconds of dispatch.
    grads = jax.jit(jax.grad(f))([v.value for v in variables])
    return [np.asarray(g) for g in grads]


def generator_half(model, token_ids, padding_mask, training=False):
    """Stage 1's generator half, step by step as `compute_losses` runs it,
    with what the tests inspect: `replaced_token_ids`, `is_replaced`, the
    masked inputs' `eligible`, `positions`, `weights`, and the `logits` at
    the masked slots."""
    masked = model.mask_inputs(token_ids, padding_mask)
    logits = model.generator_logits(masked, padding_mask, training)
    replaced = model.sample_replacements(token_ids, masked, logits)
    return {
        "replaced_token_ids": replaced,
        "is_replaced": keras.ops.not_equal(replaced, token_ids),
        "eligible": masked.eligible,
        "positions": masked.positions,
        "weights": masked.weights,
        "logits": logits,
    }


def assert_same_backbone_weights(preset_a, preset_b):
    """The T5 backbones of two preset folders hold the same weights."""
    a = keras_hub.models.T5Backbone.from_preset(str(preset_a))
    b = keras_hub.models.T5Backbone.from_preset(str(preset_b))
    assert len(a.weights) == len(b.weights)
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_allclose(
            numpy(x), numpy(y), rtol=1e-5, atol=1e-6, err_msg=x.path
        )
