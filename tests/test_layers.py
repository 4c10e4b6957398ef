"""keras-hub style layer tests of the public layers and of `SpacTorT5`.

Config round trip, output shapes against the real output, a
`mixed_bfloat16` call and a `.keras` round trip, through the small checks
of `tests/layer_test_helpers.py`. Tiny shapes only.
"""

import keras
import numpy as np
import pytest

from keras_spactor.layers import GeneratorMaskedLMHead
from keras_spactor.layers import ReplacedTokenDetectionHead
from keras_spactor.layers import SpacTorGenerator
from tests import layer_test_helpers as lth
from tests import model_helpers as mh

RNG = np.random.RandomState(0)
PADDING_MASK = np.array([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]], bool)

LAYER_CASES = {
    # hidden_dim != embedding_dim: the generator projects the embeddings
    # (SpacTorT5's default generator, of the backbone's width, does not).
    "generator": (
        lambda: SpacTorGenerator(
            num_layers=2,
            num_heads=2,
            hidden_dim=8,
            intermediate_dim=16,
            embedding_dim=12,
            key_value_dim=3,
            activation="relu",
            use_gated_activation=False,
            dropout=0.1,
            layer_norm_epsilon=1e-5,
        ),
        {
            "embeddings": RNG.normal(size=(2, 6, 12)).astype("float32"),
            "padding_mask": PADDING_MASK,
        },
        (2, 6, 8),
        {"embeddings": (0, 1), "padding_mask": (0, 1)},
    ),
    "generator_head": (
        lambda: GeneratorMaskedLMHead(
            vocabulary_size=20, embedding_dim=8, layer_norm_epsilon=1e-5
        ),
        {
            "hidden_states": RNG.normal(size=(2, 3, 8)).astype("float32"),
            "embeddings": RNG.normal(size=(20, 8)).astype("float32"),
        },
        (2, 3, 20),
        {"hidden_states": (0, 1)},
    ),
    "rtd_head": (
        lambda: ReplacedTokenDetectionHead(hidden_dim=8, activation="relu"),
        {"hidden_states": RNG.normal(size=(2, 5, 8)).astype("float32")},
        (2, 5),
        {"hidden_states": (0, 1)},
    ),
}
layer_cases = pytest.mark.parametrize(
    "factory,inputs,expected_shape,unknown_dims",
    list(LAYER_CASES.values()),
    ids=list(LAYER_CASES),
)


@layer_cases
def test_layer_config_round_trip(factory, inputs, expected_shape, unknown_dims):
    layer = factory()
    revived = lth.check_config_round_trip(layer, inputs)
    # Every constructor argument given above survives (not only defaults).
    config = revived.get_config()
    for key, value in layer.get_config().items():
        if key != "name":
            assert config[key] == value, key


@layer_cases
def test_layer_output_shape(factory, inputs, expected_shape, unknown_dims):
    output = lth.check_output_shape(factory(), inputs, unknown_dims)
    assert tuple(output.shape) == expected_shape


@layer_cases
def test_layer_mixed_bfloat16_call(
    factory, inputs, expected_shape, unknown_dims
):
    policy = keras.config.dtype_policy().name
    lth.check_mixed_bfloat16_call(factory, inputs)
    assert keras.config.dtype_policy().name == policy


@layer_cases
def test_layer_keras_file_round_trip(
    factory, inputs, expected_shape, unknown_dims, tmp_path
):
    lth.check_keras_file_round_trip(factory(), inputs, tmp_path)


def test_mixed_bfloat16_check_restores_the_policy_on_failure():
    def failing_factory():
        if keras.config.dtype_policy().name == "mixed_bfloat16":
            raise RuntimeError("factory failed")
        return ReplacedTokenDetectionHead(hidden_dim=4)

    policy = keras.config.dtype_policy().name
    inputs = {"hidden_states": np.ones((1, 2, 4), "float32")}
    with pytest.raises(RuntimeError, match="factory failed"):
        lth.check_mixed_bfloat16_call(failing_factory, inputs)
    assert keras.config.dtype_policy().name == policy


def test_generator_head_builds_on_its_first_call():
    """Keras builds from `<call argument>_shape` names: a head that is not
    built yet must build on a first call, eager or symbolic."""
    head = GeneratorMaskedLMHead(vocabulary_size=10, embedding_dim=4)
    logits = head(np.ones((2, 3, 4), "float32"), np.ones((10, 4), "float32"))
    assert tuple(logits.shape) == (2, 3, 10)
    head = GeneratorMaskedLMHead(vocabulary_size=10, embedding_dim=4)
    spec = head(keras.KerasTensor((None, 3, 4)), keras.KerasTensor((10, 4)))
    assert tuple(spec.shape) == (None, 3, 10)


# ----------------------------------------------------------------------
# SpacTorT5: the same checks, plus its losses.


def _batch():
    return mh.span_corruption_like_batch(batch_size=2, length=16, targets=4)


def _losses(model, x, y, hybrid=True):
    """This batch's losses and accuracies, as the metric update logs them."""
    _, outputs = model.compute_losses(x, y, hybrid=hybrid, training=False)
    model.reset_metrics()
    return lth.to_numpy(model.update_metrics(outputs))


def test_spactor_t5_config_round_trip_gives_same_outputs():
    x, y = _batch()
    # Non-default settings that keep the tiny shapes (each new shape costs
    # JAX compilations); the generator's own widths are tested above.
    model = mh.tiny_model(
        rtd_positions="all", mask_replacement_rate=0.85, tau=7, seed=3
    )
    revived = lth.check_config_round_trip(model, {"inputs": x})
    assert revived.get_config() == model.get_config()
    assert revived.generator.get_config() == model.generator.get_config()
    assert revived.tau == 7
    # Same variables (the masking stream included): the same losses.
    lth.assert_structures_equal(_losses(revived, x, y), _losses(model, x, y))


def test_spactor_t5_output_shape():
    x, _ = _batch()
    model = mh.tiny_model()
    logits = lth.check_output_shape(
        model,
        {"inputs": x},
        unknown_dims={"inputs": (0, 1)},
        compute_output_shape=False,
    )
    assert tuple(logits.shape) == (2, 4, mh.EMBEDDING_ROWS)


def test_spactor_t5_mixed_bfloat16_call():
    x, y = _batch()
    # The logits come out float32, as keras-hub's T5Seq2SeqLM's do: inside
    # the model's autocast scope, Keras' `Embedding` (autocast=False) reads
    # its float32 output matrix, and the bfloat16 hidden states promote.
    reference, model = lth.check_mixed_bfloat16_call(
        mh.tiny_model, {"inputs": x}, output_dtype="float32"
    )
    for layer in (model.backbone, *model.auxiliary_layers):
        assert layer.dtype_policy.name == "mixed_bfloat16", layer.name
    # The transformer itself runs in bfloat16.
    outputs = model.backbone(x)
    for name, value in outputs.items():
        dtype = keras.backend.standardize_dtype(value.dtype)
        assert dtype == "bfloat16", (name, dtype)
    stats = {h: _losses(model, x, y, hybrid=h) for h in (False, True)}
    for hybrid, values in stats.items():
        for name, value in values.items():
            assert value.dtype == np.float32, (hybrid, name)
            assert np.isfinite(value), (hybrid, name)
    assert stats[True]["mlm_loss"] > 0 and stats[True]["rtd_loss"] > 0
    # Plain span corruption: near the float32 model's (same weights).
    expected = _losses(reference, x, y, hybrid=False)
    np.testing.assert_allclose(
        stats[False]["sc_loss"], expected["sc_loss"], rtol=0.05
    )


def test_spactor_t5_keras_file_round_trip(tmp_path):
    x, y = _batch()
    model = mh.tiny_model(rtd_positions="all", seed=5)
    loaded = lth.check_keras_file_round_trip(model, x, tmp_path)
    assert loaded.get_config() == model.get_config()
    # The masking stream is a saved weight: both draw the same masks and
    # samples, so every loss matches bit for bit, twice in a row.
    for _ in range(2):
        lth.assert_structures_equal(_losses(loaded, x, y), _losses(model, x, y))
