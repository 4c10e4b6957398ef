"""`SpacTorT5` presets: keras-hub compatibility, resuming, cross-backend."""

import inspect
import json
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import keras_hub
import numpy as np
import pytest

import keras_spactor
from keras_spactor.models import preset_io
from keras_spactor.models import spactor_presets
from tests import model_helpers as mh

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER_PIECES = 2000
ATOL = 1e-5


def _tiny_backbone(vocabulary_size):
    return keras_hub.models.T5Backbone(
        vocabulary_size=vocabulary_size,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        dropout=0.0,
        activation="gelu",
        use_gated_activation=True,
        tie_embedding_weights=False,
    )


def _randomize(layers, seed):
    """Non-default values everywhere (layer norms start at ones)."""
    rng = np.random.RandomState(seed)
    for layer in layers:
        for variable in layer.weights:
            value = rng.normal(0.0, 0.2, variable.shape)
            variable.assign(value.astype(variable.dtype))


def _outputs(model, x):
    return mh.numpy(model(x))


def _weights_equal(layers_a, layers_b):
    for a, b in zip(layers_a, layers_b, strict=True):
        wa, wb = mh.numpy_weights(a), mh.numpy_weights(b)
        assert len(wa) == len(wb) > 0
        for va, vb in zip(wa, wb):
            np.testing.assert_array_equal(va, vb)


@pytest.fixture(scope="module")
def batch():
    x, _ = mh.span_corruption_like_batch(batch_size=2, length=16, targets=6)
    return x


@pytest.fixture(scope="module")
def model(data_tokenizer):
    keras.utils.set_random_seed(3)
    backbone = _tiny_backbone(spactor_presets.embedding_rows(TOKENIZER_PIECES))
    model = keras_spactor.SpacTorT5(
        backbone,
        vocabulary_size=TOKENIZER_PIECES,
        tokenizer=data_tokenizer,
        mask_token_id=keras_spactor.data.mask_token_id(data_tokenizer),
        generator_num_layers=1,
        rtd_loss_weight=7.5,
        mlm_loss_weight=0.5,
        tau=11,
        seed=5,
    )
    _randomize(model.auxiliary_layers, seed=4)
    return model


@pytest.fixture(scope="module")
def preset_dir(model, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("spactor_preset"))
    model.save_to_preset(path)
    return path


def test_keras_hub_t5_backbone_loads_preset_unchanged(model, preset_dir, batch):
    backbone = keras_hub.models.T5Backbone.from_preset(preset_dir)
    assert type(backbone) is keras_hub.models.T5Backbone
    assert backbone.get_config() == model.backbone.get_config()
    _weights_equal([backbone], [model.backbone])
    expected = model.backbone(batch)
    actual = backbone(batch)
    for key in ("encoder_sequence_output", "decoder_sequence_output"):
        np.testing.assert_allclose(
            mh.numpy(actual[key]), mh.numpy(expected[key]), atol=ATOL
        )


def test_keras_hub_t5_seq2seq_lm_loads_preset(
    model, preset_dir, batch, data_tokenizer
):
    lm = keras_hub.models.T5Seq2SeqLM.from_preset(preset_dir)
    tokenizer = lm.preprocessor.tokenizer
    assert tokenizer.vocabulary_size() == TOKENIZER_PIECES
    assert tokenizer.get_vocabulary() == data_tokenizer.get_vocabulary()
    logits = mh.numpy(lm(batch))
    expected = _outputs(model, batch)
    assert (
        logits.shape == expected.shape == (2, 6, model.backbone.vocabulary_size)
    )
    np.testing.assert_allclose(logits, expected, atol=ATOL)


def test_spactor_from_preset_restores_generator_heads_and_config(
    model, preset_dir, batch
):
    with open(os.path.join(preset_dir, preset_io.SPACTOR_CONFIG_FILE)) as f:
        assert json.load(f)["rtd_loss_weight"] == 7.5
    # Built in the same process, after other models: its sublayers get
    # other auto-generated names than the saved model's.
    restored = keras_spactor.SpacTorT5.from_preset(preset_dir)
    _weights_equal(restored.auxiliary_layers, model.auxiliary_layers)
    _weights_equal([restored.backbone], [model.backbone])
    assert restored.spactor_config() == model.spactor_config()
    assert restored.rtd_loss_weight == 7.5
    assert restored.mlm_loss_weight == 0.5
    assert restored.tau == 11
    assert restored.mask_token_id == model.mask_token_id
    assert restored.tokenizer.vocabulary_size() == TOKENIZER_PIECES
    np.testing.assert_allclose(
        _outputs(restored, batch), _outputs(model, batch), atol=ATOL
    )
    # kwargs override the stored config.
    retuned = keras_spactor.SpacTorT5.from_preset(preset_dir, tau=3)
    assert retuned.tau == 3
    assert retuned.rtd_loss_weight == 7.5


@pytest.fixture(scope="module")
def plain_preset_dir(tmp_path_factory):
    """`mh.tiny_model()`: 200 pieces, no tokenizer."""
    path = str(tmp_path_factory.mktemp("plain_preset"))
    mh.tiny_model().save_to_preset(path)
    return path


def test_auxiliary_weights_of_another_generator_are_rejected(
    model, preset_dir, tmp_path
):
    deeper = keras_spactor.SpacTorT5(
        model.backbone,
        vocabulary_size=TOKENIZER_PIECES,
        mask_token_id=model.mask_token_id,
        generator_num_layers=2,
    )
    path = os.path.join(preset_dir, preset_io.AUXILIARY_WEIGHTS_FILE)
    with pytest.raises(ValueError, match="another generator"):
        preset_io.load_auxiliary_weights(deeper, path)
    # The other way round Keras alone would load the first layer silently.
    deeper_path = str(tmp_path / "deeper.weights.h5")
    preset_io.save_auxiliary_weights(deeper, deeper_path)
    before = mh.numpy_weights(model.generator)
    with pytest.raises(ValueError, match="another generator"):
        preset_io.load_auxiliary_weights(model, deeper_path)
    for value, kept in zip(mh.numpy_weights(model.generator), before):
        np.testing.assert_array_equal(value, kept)


CROSS_BACKEND_SCRIPT = textwrap.dedent(
    """
    import sys

    import keras
    import numpy as np

    import keras_spactor

    preset, batch_file, out_file, resaved = sys.argv[1:5]
    assert keras.backend.backend() == sys.argv[5], keras.backend.backend()
    model = keras_spactor.SpacTorT5.from_preset(preset)
    with np.load(batch_file) as stored:
        x = {key: stored[key] for key in stored.files}
    np.savez(out_file, logits=keras.ops.convert_to_numpy(model(x)))
    model.save_to_preset(resaved)
    """
)


@pytest.mark.slow
def test_preset_round_trips_through_the_other_backend(
    model, preset_dir, batch, tmp_path
):
    backend = keras.backend.backend()
    other = {"jax": "tensorflow", "tensorflow": "jax"}[backend]
    batch_file = str(tmp_path / "batch.npz")
    out_file = str(tmp_path / "outputs.npz")
    resaved = str(tmp_path / "resaved")
    np.savez(batch_file, **batch)
    env = dict(os.environ, KERAS_BACKEND=other, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", CROSS_BACKEND_SCRIPT, preset_dir]
        + [batch_file, out_file, resaved, other],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = _outputs(model, batch)
    with np.load(out_file) as stored:
        np.testing.assert_allclose(stored["logits"], expected, atol=ATOL)

    back = keras_spactor.SpacTorT5.from_preset(resaved)
    np.testing.assert_allclose(_outputs(back, batch), expected, atol=ATOL)
    _weights_equal(back.auxiliary_layers, model.auxiliary_layers)
    _weights_equal([back.backbone], [model.backbone])
    assert back.spactor_config() == model.spactor_config()


def test_unknown_preset_lists_valid_presets():
    with pytest.raises(ValueError, match="no_such_preset") as info:
        keras_spactor.SpacTorT5.from_preset("no_such_preset")
    for name in keras_spactor.SpacTorT5.presets:
        assert name in str(info.value)


def test_directory_without_preset_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="holds no preset"):
        keras_spactor.SpacTorT5.from_preset(str(tmp_path))


def test_tokenizer_vocabulary_mismatch_is_rejected(
    model, plain_preset_dir, data_tokenizer
):
    # Saved for a 200-piece vocabulary, loaded with a 2,000-piece tokenizer.
    with pytest.raises(ValueError, match="mismatch"):
        keras_spactor.SpacTorT5.from_preset(
            plain_preset_dir, tokenizer=data_tokenizer
        )
    with pytest.raises(ValueError, match="mismatch"):
        keras_spactor.SpacTorT5(
            model.backbone, vocabulary_size=1999, tokenizer=data_tokenizer
        )


def test_mask_id_on_a_real_token_is_rejected(model, preset_dir, data_tokenizer):
    real = data_tokenizer.token_to_id("the")
    assert data_tokenizer.id_to_token(real) == "the"
    with pytest.raises(ValueError, match="real token"):
        keras_spactor.SpacTorT5.from_preset(preset_dir, mask_token_id=real)
    with pytest.raises(ValueError, match="real token"):
        keras_spactor.SpacTorT5(
            model.backbone,
            vocabulary_size=TOKENIZER_PIECES,
            tokenizer=data_tokenizer,
            mask_token_id=real,
        )


@pytest.fixture
def micro_builtin(monkeypatch):
    """A tiny extra built-in preset, so built-in loading stays fast."""
    name = "spactor_t5_test_micro"
    monkeypatch.setitem(
        spactor_presets.SPACTOR_PRESETS,
        name,
        {
            "description": "test only",
            "backbone": {
                "num_layers": 2,
                "num_heads": 2,
                "hidden_dim": 32,
                "intermediate_dim": 64,
                "key_value_dim": 16,
            },
        },
    )
    return name


def test_builtin_preset_takes_mask_id_from_tokenizer(
    micro_builtin, data_tokenizer
):
    model = keras_spactor.SpacTorT5.from_preset(
        micro_builtin, tokenizer=data_tokenizer
    )
    assert model.vocabulary_size == TOKENIZER_PIECES
    assert model.backbone.vocabulary_size == 2048
    mask = data_tokenizer.get_vocabulary().index("<mask>")
    assert model.mask_token_id == mask
    with pytest.raises(ValueError, match="mismatch"):
        keras_spactor.SpacTorT5.from_preset(
            micro_builtin, vocabulary_size=1000, tokenizer=data_tokenizer
        )


@pytest.fixture(scope="module")
def maskless_tokenizer(data_tokenizer):
    """The default vocabulary with its `<mask>` piece renamed."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(data_tokenizer.proto)
    for piece in proto.pieces:
        if piece.piece == "<mask>":
            piece.piece = "<not_a_mask>"
    tokenizer = keras_hub.models.T5Tokenizer(proto=proto.SerializeToString())
    assert "<mask>" not in tokenizer.get_vocabulary()
    return tokenizer


def test_builtin_preset_with_maskless_tokenizer_uses_spare_row(
    micro_builtin, maskless_tokenizer
):
    tokenizer = maskless_tokenizer
    model = keras_spactor.SpacTorT5.from_preset(
        micro_builtin, tokenizer=tokenizer
    )
    # The first spare embedding row, as for T5's own vocabulary (32100).
    assert model.mask_token_id == TOKENIZER_PIECES
    assert model.mask_token_id == keras_spactor.data.mask_token_id(tokenizer)


# Public T5 v1.1 configs (d_model, d_ff, num_layers, num_heads, d_kv).
T5_V1_1_SHAPES = {
    "spactor_t5_small": (512, 1024, 8, 6, 64),
    "spactor_t5_base": (768, 2048, 12, 12, 64),
    "spactor_t5_large": (1024, 2816, 24, 16, 64),
}


def test_builtin_preset_configs_match_t5_v1_1():
    presets = keras_spactor.SpacTorT5.presets
    assert set(presets) == set(spactor_presets.SPACTOR_PRESETS)
    own = {"spactor_t5_tiny", "spactor_t5_mini", "spactor_t5_nano"}
    assert set(T5_V1_1_SHAPES) | own == set(presets)
    for name, shape in T5_V1_1_SHAPES.items():
        config = presets[name]["config"]
        actual = (
            config["hidden_dim"],
            config["intermediate_dim"],
            config["num_layers"],
            config["num_heads"],
            config["key_value_dim"],
        )
        assert actual == shape, name
    assert spactor_presets.T5_V1_1["use_gated_activation"] is True
    assert spactor_presets.T5_V1_1["activation"] == "gelu"
    assert spactor_presets.embedding_rows(32100) == 32128
    assert spactor_presets.embedding_rows(32128) == 32256
    assert spactor_presets.embedding_rows(2000) == 2048


def test_tiny_builtin_preset_with_t5_vocabulary():
    model = keras_spactor.SpacTorT5.from_preset(
        "spactor_t5_tiny", vocabulary_size=32100
    )
    backbone = model.backbone
    assert backbone.vocabulary_size == 32128
    assert backbone.token_embedding.embeddings.shape == (32128, 256)
    assert model.vocabulary_size == 32100
    assert model.mask_token_id == 32100
    assert backbone.tie_embedding_weights is False
    assert backbone.dropout == 0.0
    assert backbone.use_gated_activation is True
    assert backbone.num_layers == 4
    assert backbone.hidden_dim == 256
    assert model.generator_num_layers == 1
    assert len(model.generator.transformer_layers) == 1


# ----------------------------------------------------------------------
# keras-hub conventions: `load_weights`, `presets`, arguments inferred from
# the tokenizer, task weights in a Keras `.weights.h5` file.


def _assert_t5x_embeddings(backbone, pieces):
    # keras-hub's own initialiser gives mean 1.0 (see t5x_initialization).
    embedding = backbone.token_embedding
    inputs = mh.numpy(embedding.embeddings)
    assert abs(inputs.mean()) < 0.1
    assert 0.8 < inputs.std() < 1.2
    outputs = mh.numpy(embedding.reverse_embeddings)
    assert np.all(outputs[:, pieces:] == 0.0)
    assert np.all(np.any(outputs[:, :pieces] != 0.0, axis=0))


def test_from_preset_without_weights_gives_random_architecture(
    model, preset_dir, batch
):
    keras.utils.set_random_seed(8)
    fresh = keras_spactor.SpacTorT5.from_preset(preset_dir, load_weights=False)
    assert fresh.backbone.get_config() == model.backbone.get_config()
    assert fresh.spactor_config() == model.spactor_config()
    assert fresh.tokenizer.vocabulary_size() == TOKENIZER_PIECES
    layers = [fresh.backbone] + fresh.auxiliary_layers
    saved = [model.backbone] + model.auxiliary_layers
    drawn = 0
    for layer, saved_layer in zip(layers, saved):
        fresh_values = mh.numpy_weights(layer)
        saved_values = mh.numpy_weights(saved_layer)
        assert len(fresh_values) == len(saved_values) > 0
        for value, saved_value in zip(fresh_values, saved_values):
            assert value.shape == saved_value.shape
            # Layer norms start at ones, biases at zeros, in both.
            if np.ptp(value) > 0:
                drawn += 1
                assert not np.array_equal(value, saved_value)
    assert drawn >= 20
    _assert_t5x_embeddings(fresh.backbone, TOKENIZER_PIECES)
    assert not np.allclose(_outputs(fresh, batch), _outputs(model, batch))

    loaded = keras_spactor.SpacTorT5.from_preset(preset_dir, load_weights=True)
    _weights_equal(
        [loaded.backbone] + loaded.auxiliary_layers,
        [model.backbone] + model.auxiliary_layers,
    )


def test_builtin_presets_are_random_whatever_load_weights_says(
    micro_builtin,
):
    models = [
        keras_spactor.SpacTorT5.from_preset(
            micro_builtin, load_weights=load_weights, vocabulary_size=200
        )
        for load_weights in (True, False)
    ]
    for built in models:
        _assert_t5x_embeddings(built.backbone, 200)
    a, b = (mh.numpy(m.backbone.token_embedding.embeddings) for m in models)
    assert not np.array_equal(a, b)


def _t5_v1_1_params(config):
    """A T5 v1.1 backbone's parameters (untied, gated), counted by hand."""
    width, rows = config["hidden_dim"], config["vocabulary_size"]
    inner = config["num_heads"] * config["key_value_dim"]
    attention = 4 * width * inner + width  # q, k, v, o; its layer norm
    feed_forward = 3 * width * config["intermediate_dim"] + width
    encoder_layer = attention + feed_forward
    decoder_layer = 2 * attention + feed_forward  # self and cross
    position_bias = 2 * 32 * config["num_heads"]  # first layer of each stack
    return (
        config["num_layers"] * (encoder_layer + decoder_layer)
        + position_bias
        + 2 * width  # final layer norms
        + 2 * rows * width  # input and output embeddings
    )


def test_presets_have_keras_hub_layout_and_build_from_their_entry():
    presets = keras_spactor.SpacTorT5.presets
    assert sorted(presets) == sorted(spactor_presets.SPACTOR_PRESETS)
    hub_entry = next(iter(keras_hub.models.T5Backbone.presets.values()))
    arguments = inspect.signature(keras_hub.models.T5Backbone).parameters
    for name, entry in presets.items():
        metadata = entry["metadata"]
        assert set(metadata) <= set(hub_entry["metadata"])
        description = spactor_presets.SPACTOR_PRESETS[name]["description"]
        assert metadata["description"] == description
        assert isinstance(metadata["params"], int)
        config = entry["config"]
        assert set(config) <= set(arguments), name
        assert config["vocabulary_size"] == spactor_presets.T5_EMBEDDING_ROWS
        for key, value in spactor_presets.T5_V1_1.items():
            assert config[key] == value, (name, key)
        assert metadata["params"] == _t5_v1_1_params(config), name

    # The smallest for real: `from_preset` builds the backbone its entry
    # describes, with the parameters counted by hand above.
    name = "spactor_t5_mini"
    entry = presets[name]
    backbone = keras_spactor.SpacTorT5.from_preset(name).backbone
    assert backbone.count_params() == entry["metadata"]["params"]
    built = backbone.get_config()
    for key, value in entry["config"].items():
        assert built[key] == value, key


def test_vocabulary_and_mask_id_come_from_the_tokenizer(
    model, data_tokenizer, maskless_tokenizer
):
    backbone = model.backbone
    assert backbone.vocabulary_size == 2048
    inferred = keras_spactor.SpacTorT5(backbone, tokenizer=data_tokenizer)
    assert inferred.vocabulary_size == TOKENIZER_PIECES
    mask = data_tokenizer.get_vocabulary().index("<mask>")
    assert mask < TOKENIZER_PIECES
    assert inferred.mask_token_id == mask
    # No `<mask>` piece: the first spare row.
    spare = keras_spactor.SpacTorT5(backbone, tokenizer=maskless_tokenizer)
    assert spare.mask_token_id == TOKENIZER_PIECES
    # Explicit arguments win where they fit the tokenizer...
    explicit = keras_spactor.SpacTorT5(
        backbone, tokenizer=data_tokenizer, mask_token_id=TOKENIZER_PIECES
    )
    assert explicit.mask_token_id == TOKENIZER_PIECES
    # ... and are an error where they contradict it.
    with pytest.raises(ValueError, match="Leave vocabulary_size unset"):
        keras_spactor.SpacTorT5(
            backbone, tokenizer=data_tokenizer, vocabulary_size=1999
        )
    the = data_tokenizer.token_to_id("the")
    with pytest.raises(ValueError, match="real token"):
        keras_spactor.SpacTorT5(
            backbone, tokenizer=data_tokenizer, mask_token_id=the
        )


def test_preset_keeps_task_weights_in_a_keras_weights_file(model, preset_dir):
    files = set(os.listdir(preset_dir))
    assert preset_io.AUXILIARY_WEIGHTS_FILE == "spactor_auxiliary.weights.h5"
    assert preset_io.AUXILIARY_WEIGHTS_FILE in files
    assert preset_io.LEGACY_AUXILIARY_WEIGHTS_FILE not in files
    # Readable with Keras alone, by attribute path.
    other = keras_spactor.SpacTorT5(
        model.backbone, tokenizer=model.tokenizer, generator_num_layers=1
    )
    keras.saving.load_weights(
        preset_io.AuxiliaryLayers(other),
        os.path.join(preset_dir, preset_io.AUXILIARY_WEIGHTS_FILE),
    )
    _weights_equal(other.auxiliary_layers, model.auxiliary_layers)


def test_preset_with_legacy_npz_auxiliary_weights_loads(
    model, preset_dir, tmp_path
):
    legacy_dir = tmp_path / "legacy_preset"
    shutil.copytree(preset_dir, legacy_dir)
    os.remove(legacy_dir / preset_io.AUXILIARY_WEIGHTS_FILE)
    # The layout earlier versions wrote: "layer name/index/variable name".
    arrays = {
        f"{layer.name}/{i}/{variable.name}": mh.numpy(variable)
        for layer in model.auxiliary_layers
        for i, variable in enumerate(layer.weights)
    }
    assert "rtd_head/0/kernel" in arrays
    np.savez(legacy_dir / "spactor_auxiliary.weights.npz", **arrays)

    restored = keras_spactor.SpacTorT5.from_preset(str(legacy_dir))
    _weights_equal(restored.auxiliary_layers, model.auxiliary_layers)

    del arrays["rtd_head/0/kernel"]
    np.savez(legacy_dir / "spactor_auxiliary.weights.npz", **arrays)
    with pytest.raises(ValueError, match="another generator"):
        keras_spactor.SpacTorT5.from_preset(str(legacy_dir))


@pytest.mark.slow  # a fresh Python process
def test_import_exposes_distribution():
    code = (
        "import keras_spactor; "
        "print(keras_spactor.distribution.tf_strategy.__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1] == "tf_strategy"
