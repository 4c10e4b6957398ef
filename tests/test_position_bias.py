"""The one-hot relative position bias against keras-hub's own gather."""

import re

import keras
import numpy as np

from keras_spactor.layers import use_one_hot_position_bias
from tests import model_helpers as mh


def _twin_backbones():
    """Two tiny T5s with the same weights; the second one-hot."""
    gathering = mh.tiny_backbone()
    one_hot = mh.tiny_backbone()
    one_hot.set_weights(gathering.get_weights())
    changed = use_one_hot_position_bias(one_hot)
    return gathering, one_hot, changed


def _inputs():
    # 140 inputs reach every bucket, the ones past max_distance (128) too.
    x, _ = mh.span_corruption_like_batch(batch_size=2, length=140, targets=9)
    return x


def _bias_tables(model):
    return [
        w
        for w in model.trainable_weights
        if "attention" in w.path and w.path.endswith("embeddings")
    ]


def _read_by_the_outputs(backbone):
    # Not the LM head's `reverse_embeddings`: the backbone never reads it.
    return [
        v
        for v in backbone.trainable_variables
        if not v.path.endswith("reverse_embeddings")
    ]


def test_one_hot_bias_gives_keras_hubs_outputs_and_gradients():
    gathering, one_hot, changed = _twin_backbones()
    # One in the encoder's first layer, one in the decoder's.
    assert changed == 2
    assert len(_bias_tables(one_hot)) == 2
    x = _inputs()
    for key in ("encoder_sequence_output", "decoder_sequence_output"):
        np.testing.assert_allclose(
            mh.numpy(one_hot(x)[key]),
            mh.numpy(gathering(x)[key]),
            rtol=1e-6,
            atol=1e-6,
        )

    def gradients(backbone):
        def loss():
            out = backbone(x)
            # Weights on the outputs, so no bucket's gradient is trivial.
            w = np.linspace(-1, 1, 32).astype("float32")
            return keras.ops.sum(
                out["encoder_sequence_output"] ** 2
            ) + keras.ops.sum(out["decoder_sequence_output"] * w)

        return mh.gradients(backbone, _read_by_the_outputs(backbone), loss)

    expected, got = gradients(gathering), gradients(one_hot)
    tables = {id(w) for w in _bias_tables(one_hot)}
    variables = _read_by_the_outputs(one_hot)
    for variable, g, e in zip(variables, got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
        if id(variable) in tables:
            assert np.count_nonzero(e) > 0, variable.path


def test_spactor_t5_gradient_scatters_only_into_the_token_embedding():
    """GPUs run a scatter-add as atomic adds: slow where many updates meet
    (the bias table's 32 rows) or where bf16 neighbours share a word (the
    generator's picked positions). Only the embedding's own remains."""
    model = mh.tiny_model()
    tables = _bias_tables(model)
    # Encoder, decoder and generator each own one table.
    assert len(tables) == 3, [w.path for w in tables]
    x, y = mh.span_corruption_like_batch()

    def loss():
        value, _ = model.compute_losses(x, y, hybrid=True, training=True)
        return value

    if keras.backend.backend() == "jax":
        import jax

        variables = model.trainable_variables

        def f(values):
            with keras.StatelessScope(
                state_mapping=list(zip(variables, values))
            ):
                return loss()

        hlo = jax.jit(jax.grad(f)).lower([v.value for v in variables])
        scatters = re.findall(
            r"= (\w+\[[0-9,]*\])\S* scatter\(", hlo.as_text(dialect="hlo")
        )
        rows, width = model.backbone.token_embedding.embeddings.shape
        # The embedding is read twice: by the encoder and by the decoder.
        assert scatters == [f"f32[{rows},{width}]"] * 2, scatters
    else:
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = loss()
        for g in tape.gradient(value, tables):
            # A gather's gradient is IndexedSlices (a scatter to apply).
            assert isinstance(g, tf.Tensor), type(g)
