"""The fused-attention path against keras-hub's own T5 attention."""

import json

import keras
import keras_hub
import numpy as np
import pytest

from keras_spactor.layers import fused_attention
from keras_spactor.layers import use_fused_attention
from keras_spactor.layers import use_one_hot_position_bias
from tests import model_helpers as mh

OUTPUTS = ("encoder_sequence_output", "decoder_sequence_output")


def _twin_backbones(one_hot=False, **kwargs):
    """Two tiny T5s with the same weights; the second fused."""
    original = mh.tiny_backbone(**kwargs)
    fused = mh.tiny_backbone(**kwargs)
    fused.set_weights(original.get_weights())
    if one_hot:
        use_one_hot_position_bias(original)
        use_one_hot_position_bias(fused)
    # Two stacks of two layers.
    assert use_fused_attention(fused) == 4
    return original, fused


def _padded_inputs():
    """Padding at the end of the encoder and decoder inputs, of different
    lengths per example, and one example with decoder padding inside."""
    x, _ = mh.span_corruption_like_batch(batch_size=3, length=20, targets=7)
    x["encoder_padding_mask"][1, -8:] = False
    x["encoder_token_ids"][1, -8:] = 0
    x["decoder_padding_mask"][0, -2:] = False
    x["decoder_padding_mask"][2, 3] = False
    return x


def _weighted_sum(outputs):
    # Weights on the outputs, so that no gradient is trivially symmetric.
    w = np.linspace(-1, 1, 32).astype("float32")
    return keras.ops.sum(outputs["encoder_sequence_output"] ** 2) + (
        keras.ops.sum(outputs["decoder_sequence_output"] * w)
    )


def _read_by_the_outputs(backbone):
    return [
        v
        for v in backbone.trainable_variables
        if not v.path.endswith("reverse_embeddings")
    ]


def _assert_round_off(got, expected, name):
    """Equal within float32 round-off of sums in another order: 1e-5 of
    the tensor's largest value (a dropped mask moves them by 1e-2)."""
    scale = np.abs(expected).max()
    assert scale > 0, name
    np.testing.assert_allclose(
        got, expected, rtol=0, atol=1e-5 * scale, err_msg=name
    )


def test_outputs_and_gradients_equal_keras_hubs():
    original, fused = _twin_backbones()
    x = _padded_inputs()
    for key in OUTPUTS:
        np.testing.assert_allclose(
            mh.numpy(fused(x)[key]),
            mh.numpy(original(x)[key]),
            rtol=1e-5,
            atol=1e-6,
        )

    def gradients(backbone):
        return mh.gradients(
            backbone,
            _read_by_the_outputs(backbone),
            lambda: _weighted_sum(backbone(x)),
        )

    expected, got = gradients(original), gradients(fused)
    for variable, g, e in zip(_read_by_the_outputs(fused), got, expected):
        _assert_round_off(g, e, variable.path)


def test_the_masks_hold_and_the_comparison_sees_a_dropped_one(monkeypatch):
    """With the path on, a padded encoder token changes nothing, nor does
    a later decoder token at earlier positions; and the comparison with
    keras-hub above fails if the path loses either mask."""
    original, fused = _twin_backbones()
    x = _padded_inputs()
    before = {k: mh.numpy(v) for k, v in fused(x).items()}
    changed = {k: v.copy() for k, v in x.items()}
    changed["encoder_token_ids"][1, -8:] = 7  # padded positions
    changed["decoder_token_ids"][:, 5] = 11  # decoder position 5
    after = {k: mh.numpy(v) for k, v in fused(changed).items()}
    unpadded = x["encoder_padding_mask"][1]
    np.testing.assert_allclose(
        after["encoder_sequence_output"][1][unpadded],
        before["encoder_sequence_output"][1][unpadded],
        atol=1e-6,
    )
    np.testing.assert_allclose(
        after["decoder_sequence_output"][:, :5],
        before["decoder_sequence_output"][:, :5],
        atol=1e-6,
    )
    # ... while position 5 itself does change: the edit was seen.
    assert not np.allclose(
        after["decoder_sequence_output"][:, 5],
        before["decoder_sequence_output"][:, 5],
        atol=1e-3,
    )

    expected = mh.numpy(original(x)["decoder_sequence_output"])
    attend = keras.ops.dot_product_attention
    for dropped in ("mask", "is_causal"):

        def leaky(*args, dropped=dropped, **kwargs):
            kwargs[dropped] = None if dropped == "mask" else False
            return attend(*args, **kwargs)

        monkeypatch.setattr(fused_attention.ops, "dot_product_attention", leaky)
        got = mh.numpy(fused(x)["decoder_sequence_output"])
        assert np.abs(got - expected).max() > 1e-2, dropped


def _twin_models():
    original = mh.tiny_model(seed=3)
    fused = mh.tiny_model(seed=3)
    fused.set_weights(original.get_weights())
    # Encoder, decoder and the generator's one layer.
    assert use_fused_attention(fused) == 5
    return original, fused


@pytest.mark.slow
@pytest.mark.parametrize("hybrid", [True, False], ids=["stage1", "stage2"])
def test_spactor_loss_and_gradients_equal_keras_hubs(hybrid):
    """A whole SpacTor step's loss (generator, RTD head, backbone in
    stage 1; the backbone alone in stage 2) and the gradients of every
    variable that stage trains, with decoder padding."""
    x, y = mh.span_corruption_like_batch()
    x["decoder_padding_mask"][:, -2:] = False
    results = []
    for model in _twin_models():
        variables = model.stage_variables(hybrid)

        def loss(model=model):
            return model.compute_losses(x, y, hybrid=hybrid)[0]

        grads = mh.gradients(model, variables, loss)
        # Eagerly, after the gradients: both models' masks and draws come
        # from the same seed state.
        _, outputs = model.compute_losses(x, y, hybrid=hybrid)
        terms = {
            k: float(mh.numpy(v))
            for k, v in outputs.items()
            if k.endswith("loss")
        }
        results.append((terms, grads, [v.path for v in variables]))
    (expected_terms, expected, paths), (terms, got, _) = results
    assert set(terms) == (
        {"loss", "sc_loss", "mlm_loss", "rtd_loss"}
        if hybrid
        else {"loss", "sc_loss"}
    )
    for key, value in expected_terms.items():
        np.testing.assert_allclose(terms[key], value, rtol=1e-6)
    for path, g, e in zip(paths, got, expected):
        if not np.any(e):  # e.g. the generator's table in stage 2
            assert not np.any(g), path
            continue
        _assert_round_off(g, e, path)


@pytest.mark.slow
def test_generate_with_the_cache_equals_keras_hubs():
    keras.utils.set_random_seed(5)
    original, fused = _twin_backbones()
    models = [
        keras_hub.models.T5Seq2SeqLM(backbone=b, preprocessor=None)
        for b in (original, fused)
    ]
    x = _padded_inputs()
    x["decoder_token_ids"] = np.zeros((3, 6), "int32")
    x["decoder_padding_mask"] = np.zeros((3, 6), bool)
    x["decoder_padding_mask"][:, 0] = True
    tokens, logits = [], []
    for model in models:
        model.compile(sampler="greedy")
        tokens.append(mh.numpy(model.generate_step(x)["decoder_token_ids"]))
        # The cached decoder at step 3, after the generated prefix.
        encoded = model.call_encoder(
            x["encoder_token_ids"], x["encoder_padding_mask"]
        )
        _, _, self_cache, cross_cache = model._build_cache(
            x["encoder_token_ids"], x["encoder_padding_mask"], tokens[0]
        )
        step = model.call_decoder_with_cache(
            encoded,
            x["encoder_padding_mask"],
            tokens[0][:, 3:4],
            self_cache,
            3,
            cross_cache,
            None,
        )
        logits.append(mh.numpy(step[0]))
    np.testing.assert_array_equal(tokens[1], tokens[0])
    # Not all one token: the check could tell a broken cache.
    assert len(np.unique(tokens[0][:, 1:])) > 1
    np.testing.assert_allclose(logits[1], logits[0], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_composes_with_one_hot_and_saves_as_keras_hub(tmp_path):
    original, fused = _twin_backbones(one_hot=True)
    x = _padded_inputs()
    for key in OUTPUTS:
        np.testing.assert_allclose(
            mh.numpy(fused(x)[key]),
            mh.numpy(original(x)[key]),
            rtol=1e-5,
            atol=1e-6,
        )
    for name, backbone in (("original", original), ("fused", fused)):
        backbone.save_to_preset(str(tmp_path / name))
    configs = []
    for name in ("original", "fused"):
        config = json.loads((tmp_path / name / "config.json").read_text())
        config["config"].pop("name")  # keras' unique layer names
        configs.append(config)
    assert configs[1] == configs[0]
    # A preset saved with the path on loads into a plain keras-hub model.
    loaded = keras_hub.models.T5Backbone.from_preset(str(tmp_path / "fused"))
    for key in OUTPUTS:
        np.testing.assert_allclose(
            mh.numpy(loaded(x)[key]),
            mh.numpy(fused(x)[key]),
            rtol=1e-5,
            atol=1e-5,
        )


@pytest.mark.slow
def test_dropout_falls_back_to_keras_hubs_arithmetic():
    """Training with dropout: the same draws, the same values."""
    backbones = []
    for _ in range(2):
        keras.utils.set_random_seed(9)
        backbones.append(
            keras_hub.models.T5Backbone(
                vocabulary_size=mh.EMBEDDING_ROWS,
                num_layers=2,
                num_heads=2,
                hidden_dim=32,
                intermediate_dim=64,
                dropout=0.25,
            )
        )
    original, fused = backbones
    fused.set_weights(original.get_weights())
    use_fused_attention(fused)
    x = _padded_inputs()
    for key in OUTPUTS:
        np.testing.assert_allclose(
            mh.numpy(fused(x, training=True)[key]),
            mh.numpy(original(x, training=True)[key]),
            rtol=1e-5,
            atol=1e-6,
        )
    # The draws mattered: without dropout the outputs differ.
    plain = mh.numpy(fused(x)[OUTPUTS[0]])
    dropped = mh.numpy(original(x, training=True)[OUTPUTS[0]])
    assert np.abs(plain - dropped).max() > 1e-3
