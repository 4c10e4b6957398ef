import importlib.util
import os

import keras_hub
import pytest

from keras_spactor.data import vocabulary as vocabulary_lib
from keras_spactor.data.builtin_corpus import builtin_corpus_documents
from keras_spactor.data.vocabulary import default_vocabulary
from keras_spactor.data.vocabulary import mask_token_id
from keras_spactor.data.vocabulary import train_vocabulary
from keras_spactor.data.vocabulary import validate_sentinels


def _load_tool(name):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "tools", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"tools_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_vocabulary_tool = _load_tool("train_vocabulary")


def test_tool_end_to_end_on_builtin_text(tmp_path):
    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(builtin_corpus_documents("train")[:120]))
    info = train_vocabulary_tool.main(
        [
            str(docs),
            "--output_prefix",
            str(tmp_path / "v"),
            "--vocabulary_size",
            "700",
        ]
    )
    assert info["vocabulary_size"] == 700
    assert info["mask_token_id"] == 3
    assert info["sentinel_ids"][:2] == [699, 698]
    assert info["sentinel_ids"][-1] == 600

    tokenizer = keras_hub.models.T5Tokenizer(proto=info["model_file"])
    assert tokenizer.vocabulary_size() == 700
    assert tokenizer.token_to_id("<pad>") == 0
    assert tokenizer.token_to_id("</s>") == 1
    assert tokenizer.token_to_id("<unk>") == 2
    assert tokenizer.token_to_id("<mask>") == 3
    assert tokenizer.token_to_id("<extra_id_0>") == 699
    assert tokenizer.token_to_id("<extra_id_99>") == 600
    validate_sentinels(tokenizer)
    assert mask_token_id(tokenizer) == 3

    text = "The assert statement raises an exception."
    ids = tokenizer(text)
    assert 1 not in ids.tolist()  # no EOS added
    assert tokenizer.detokenize(ids) == text
    ids = tokenizer("a <extra_id_0> b <mask>").tolist()
    assert 699 in ids and 3 in ids


def test_without_mask_token_uses_first_free_row(tmp_path):
    info = train_vocabulary(
        builtin_corpus_documents("train")[:80],
        str(tmp_path / "v"),
        vocabulary_size=400,
        add_mask_token=False,
    )
    assert info["mask_token_id"] is None
    tokenizer = keras_hub.models.T5Tokenizer(proto=info["model_file"])
    # As for T5's 32,100 pieces: the first padded embedding row.
    assert mask_token_id(tokenizer) == 400
    validate_sentinels(tokenizer)


def test_validate_sentinels_rejects_other_orders(tmp_path):
    info = train_vocabulary(
        builtin_corpus_documents("train")[:80],
        str(tmp_path / "v"),
        vocabulary_size=300,
        num_sentinels=0,
    )
    tokenizer = keras_hub.models.T5Tokenizer(proto=info["model_file"])
    with pytest.raises(ValueError, match="must end with 100 sentinels"):
        validate_sentinels(tokenizer)


def test_default_vocabulary_is_cached(tmp_path, monkeypatch, data_tokenizer):
    cache = str(tmp_path / "cache")
    tokenizer = default_vocabulary(cache_dir=cache, vocabulary_size=500)
    assert tokenizer.vocabulary_size() == 500
    validate_sentinels(tokenizer)

    def fail(*args, **kwargs):
        raise AssertionError("retrained instead of reading the cache")

    monkeypatch.setattr(vocabulary_lib, "train_vocabulary", fail)
    again = default_vocabulary(cache_dir=cache, vocabulary_size=500)
    assert again.get_vocabulary() == tokenizer.get_vocabulary()
    monkeypatch.setenv("KERAS_SPACTOR_CACHE", cache)
    assert vocabulary_lib.default_cache_dir() == cache
    assert default_vocabulary(vocabulary_size=500).vocabulary_size() == 500
    # The session fixture: 2,000 pieces with a <mask> piece.
    assert data_tokenizer.vocabulary_size() == 2000
    assert mask_token_id(data_tokenizer) == 3


def test_load_vocabulary_reads_each_kind_of_spec(tmp_path, data_tokenizer):
    from keras_spactor.data import load_vocabulary

    expected = data_tokenizer.get_vocabulary()
    model_file = tmp_path / "pieces.model"
    model_file.write_bytes(data_tokenizer.proto)
    assert load_vocabulary(str(model_file)).get_vocabulary() == expected
    # A keras-hub preset directory (a preset name reads the same way).
    preset = tmp_path / "preset"
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=len(expected),
        num_layers=1,
        num_heads=1,
        hidden_dim=4,
        intermediate_dim=4,
    )
    backbone.save_to_preset(str(preset))
    data_tokenizer.save_to_preset(str(preset))
    assert load_vocabulary(str(preset)).get_vocabulary() == expected
    # The default: the cached vocabulary trained on the embedded corpus.
    default = default_vocabulary().get_vocabulary()
    assert load_vocabulary().get_vocabulary() == default
    assert load_vocabulary("builtin:python-docs").get_vocabulary() == default
