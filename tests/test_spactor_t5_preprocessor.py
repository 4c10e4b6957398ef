"""`SpacTorT5Preprocessor`: one owner of the ids, lengths and batch format,
shared by the pipeline and the model, saved and restored with the model."""

import json
import os

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

import keras_spactor
from keras_spactor.data import pretraining_dataset
from keras_spactor.data.vocabulary import train_vocabulary
from keras_spactor.models import SpacTorT5Preprocessor
from keras_spactor.models import preset_io
from keras_spactor.models.spactor_t5_preprocessor import model_batch
from tests import model_helpers as mh

PIECES = 600
SENTINELS = 50  # not T5's 100: the ids must follow the tokenizer
INPUTS_LENGTH = 32


@pytest.fixture(scope="module")
def fifty_sentinels(tmp_path_factory):
    """A 600-piece vocabulary ending with 50 sentinels."""
    prefix = str(tmp_path_factory.mktemp("vocab50") / "vocab50")
    info = train_vocabulary(
        "builtin:python-docs",
        prefix,
        vocabulary_size=PIECES,
        num_sentinels=SENTINELS,
        max_documents=2000,
    )
    return keras_hub.models.T5Tokenizer(proto=info["model_file"])


@pytest.fixture(scope="module")
def model(fifty_sentinels):
    keras.utils.set_random_seed(2)
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=608,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        dropout=0.0,
    )
    preprocessor = SpacTorT5Preprocessor(
        fifty_sentinels, inputs_length=INPUTS_LENGTH, noise_density=0.2
    )
    return keras_spactor.SpacTorT5(
        backbone, preprocessor=preprocessor, generator_num_layers=1, seed=3
    )


def _dataset(preprocessor, **kwargs):
    return pretraining_dataset(
        "builtin:python-docs",
        preprocessor,
        batch_size=4,
        shuffle_buffer=None,
        repeat=False,
        **kwargs,
    )


def _same_preprocessor(a, b):
    assert a.get_config() == b.get_config()
    for key in (
        "vocabulary_size",
        "pad_token_id",
        "eos_token_id",
        "mask_token_id",
        "num_sentinels",
        "inputs_length",
        "targets_length",
        "noise_density",
        "mean_noise_span_length",
    ):
        assert getattr(a, key) == getattr(b, key), key
    assert a.tokenizer.get_vocabulary() == b.tokenizer.get_vocabulary()


def test_ids_and_lengths_come_from_the_tokenizer(fifty_sentinels):
    preprocessor = SpacTorT5Preprocessor(fifty_sentinels, inputs_length=512)
    assert preprocessor.vocabulary_size == PIECES
    assert preprocessor.num_sentinels == SENTINELS
    assert preprocessor.sentinel_ids[0] == PIECES - 1
    assert preprocessor.sentinel_ids[-1] == PIECES - SENTINELS
    assert (preprocessor.pad_token_id, preprocessor.eos_token_id) == (0, 1)
    assert preprocessor.mask_token_id == 3  # its `<mask>` piece
    # seqio's arithmetic: 568 raw tokens, 114 targets at 512.
    assert preprocessor.tokens_length == 568
    assert preprocessor.targets_length == 114


def test_model_and_pipeline_take_the_same_ids(model, fifty_sentinels):
    assert model.vocabulary_size == PIECES
    assert model.num_sentinels == SENTINELS
    assert model.mask_token_id == 3
    assert model.tokenizer is fifty_sentinels
    dataset = _dataset(model.preprocessor)
    assert dataset.preprocessor is model.preprocessor
    x, y, _ = next(iter(dataset))
    assert x["encoder_token_ids"].shape == (4, INPUTS_LENGTH)
    assert y.shape == (4, model.preprocessor.targets_length)
    model.check_first_batch(dataset)  # the same owner: no complaint
    # The pipeline writes the last 50 ids as sentinels; the model never
    # masks them, and takes the 50 below (real pieces here, sentinels in
    # T5's vocabulary) as ordinary ones.
    ordinary = mh.numpy(model.ordinary_token_ids())
    written = np.unique(x["encoder_token_ids"].numpy())
    sentinels = written[written >= PIECES - SENTINELS]
    assert sentinels.size > 0 and sentinels.max() == PIECES - 1
    assert not ordinary[sentinels].any()
    assert ordinary[PIECES - 2 * SENTINELS : PIECES - SENTINELS].all()


def test_mismatched_ids_are_rejected(model, fifty_sentinels, data_tokenizer):
    with pytest.raises(ValueError, match="Leave num_sentinels unset"):
        keras_spactor.SpacTorT5(
            model.backbone, tokenizer=fifty_sentinels, num_sentinels=100
        )
    # Data made with another vocabulary: refused before anything compiles.
    other = _dataset(data_tokenizer, inputs_length=INPUTS_LENGTH)
    with pytest.raises(ValueError, match="dataset was made with"):
        model.check_first_batch(other)
    with pytest.raises(ValueError, match="contradicts"):
        _dataset(model.preprocessor, inputs_length=64)
    # 900 inputs hold 50 noise spans, 1024 hold 57: more than 50 sentinels.
    _dataset(fifty_sentinels, inputs_length=900)
    with pytest.raises(ValueError, match="more than the 50 sentinels"):
        _dataset(fifty_sentinels, inputs_length=1024)


def test_model_batch_is_one_definition_for_numpy_and_tensorflow():
    inputs = np.array([[7, 8, 1, 5, 5]], "int32")
    targets = np.array([[9, 1, 5]], "int32")
    x, y, weight = model_batch(inputs, targets, pad_token_id=5)
    np.testing.assert_array_equal(x["decoder_token_ids"], [[5, 9, 1]])
    np.testing.assert_array_equal(x["encoder_padding_mask"], [[1, 1, 1, 0, 0]])
    np.testing.assert_array_equal(x["decoder_padding_mask"], [[1, 1, 0]])
    np.testing.assert_array_equal(weight, [[1.0, 1.0, 0.0]])
    assert weight.dtype == np.float32
    tf_x, tf_y, tf_weight = model_batch(
        tf.constant(inputs), tf.constant(targets), pad_token_id=5
    )
    assert sorted(tf_x) == sorted(x)
    for key in x:
        np.testing.assert_array_equal(tf_x[key].numpy(), x[key])
    np.testing.assert_array_equal(tf_y.numpy(), y)
    np.testing.assert_array_equal(tf_weight.numpy(), weight)


def test_keras_file_restores_the_preprocessor(model, tmp_path):
    path = str(tmp_path / "checkpoint.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.preprocessor, SpacTorT5Preprocessor)
    assert loaded.preprocessor is not model.preprocessor
    _same_preprocessor(loaded.preprocessor, model.preprocessor)
    assert loaded.tokenizer is loaded.preprocessor.tokenizer
    assert loaded.num_sentinels == SENTINELS
    # Data from the restored one is the same data.
    restored = next(iter(_dataset(loaded.preprocessor)))[0]
    original = next(iter(_dataset(model.preprocessor)))[0]
    for key in original:
        np.testing.assert_array_equal(restored[key], original[key])


def test_preset_restores_the_preprocessor(model, tmp_path):
    preset = str(tmp_path / "preset")
    model.save_to_preset(preset)
    with open(os.path.join(preset, "spactor_preprocessor.json")) as file:
        assert file.read().count('"inputs_length": 32') == 1
    restored = keras_spactor.SpacTorT5.from_preset(preset)
    _same_preprocessor(restored.preprocessor, model.preprocessor)
    assert restored.num_sentinels == SENTINELS
    _same_preprocessor(
        SpacTorT5Preprocessor.from_preset(preset), model.preprocessor
    )
    # keras-hub alone still reads the preset's T5 and tokenizer.
    lm = keras_hub.models.T5Seq2SeqLM.from_preset(preset)
    assert lm.preprocessor.tokenizer.vocabulary_size() == PIECES


def test_presets_and_configs_saved_before_the_preprocessor_load(
    model, fifty_sentinels, tmp_path
):
    preset = tmp_path / "old_preset"
    model.save_to_preset(str(preset))
    os.remove(preset / "spactor_preprocessor.json")
    with open(preset / preset_io.SPACTOR_CONFIG_FILE) as file:
        assert "preprocessor" not in json.load(file)
    # The tokenizer it holds gets the default lengths.
    old = keras_spactor.SpacTorT5.from_preset(str(preset))
    assert old.preprocessor.inputs_length == 512
    assert old.num_sentinels == old.preprocessor.num_sentinels == SENTINELS

    config = model.get_config()
    del config["preprocessor"]
    bare = keras_spactor.SpacTorT5.from_config(config)
    assert bare.preprocessor is None and bare.tokenizer is None
    assert bare.num_sentinels == SENTINELS
    with pytest.raises(ValueError, match="No tokenizer"):
        _dataset(bare.preprocessor)
    # Code that attaches a tokenizer still can.
    bare.tokenizer = fifty_sentinels
    assert bare.preprocessor.num_sentinels == SENTINELS


def test_a_tokenizer_given_to_from_preset_keeps_the_lengths(
    model, data_tokenizer, tmp_path
):
    preset = str(tmp_path / "preset")
    model.save_to_preset(preset)
    with pytest.raises(ValueError, match="mismatch"):
        keras_spactor.SpacTorT5.from_preset(preset, tokenizer=data_tokenizer)
    same = keras_spactor.SpacTorT5.from_preset(
        preset, tokenizer=model.tokenizer
    )
    assert same.preprocessor.inputs_length == INPUTS_LENGTH
    assert same.preprocessor.noise_density == 0.2
