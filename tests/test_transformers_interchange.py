"""T5 interchange with Hugging Face transformers, checked both ways.

Tests marked `transformers` compare against transformers itself (PyTorch on
the CPU, float32): they need `torch` and `transformers` (CI's Python 3.11
lane installs them; see CONTRIBUTING) and skip elsewhere. The others need
neither: the export -> import round trip, the refusals, the safetensors
format and `hf://` resolution through `huggingface_hub`.
"""

import json
import os
import pathlib
import shutil
import struct

import keras
import keras_hub
import numpy as np
import pytest

import keras_spactor
from keras_spactor.data.vocabulary import train_vocabulary
from keras_spactor.interchange import activations
from keras_spactor.interchange import safetensors_io
from keras_spactor.interchange.transformers_export import export_to_transformers
from keras_spactor.interchange.transformers_import import (
    load_transformers_checkpoint,
)
from keras_spactor.models import spactor_presets

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Python lists are mutable sequences.",
    "A function returns a value.",
    "Each module has its own private namespace, used as the global one.",
]
LABELS = ["positive", "negative", "a class name"]
# Tokenizer pieces of the transformers-made checkpoints: 400 SentencePiece
# pieces plus transformers' 100 `<extra_id_N>`, in 512 embedding rows.
PLAIN_PIECES = 400
ROWS = 512
GREEDY_STEPS = 20

# Tiny transformers T5 families: original T5 (ReLU, tied and scaled),
# T5 v1.1 / FLAN-T5 (gated tanh-GELU, untied) and a t5-efficient-like shape
# (heads * d_kv != d_model, three layers).
FAMILIES = {
    "t5": dict(
        feed_forward_proj="relu",
        tie_word_embeddings=True,
        d_model=32,
        d_kv=8,
        num_heads=4,
        d_ff=64,
        num_layers=2,
    ),
    "t5_v1_1": dict(
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        d_model=32,
        d_kv=8,
        num_heads=4,
        d_ff=48,
        num_layers=2,
    ),
    "t5_efficient": dict(
        feed_forward_proj="relu",
        tie_word_embeddings=False,
        d_model=24,
        d_kv=16,
        num_heads=3,
        d_ff=96,
        num_layers=3,
    ),
}


@pytest.fixture(scope="module")
def vocabularies(tmp_path_factory):
    """Our kind (sentinels and `<mask>` in the proto, 500 pieces) and the
    original T5's kind (plain pieces; transformers adds the sentinels)."""
    folder = tmp_path_factory.mktemp("vocabularies")
    ours = train_vocabulary(
        "builtin:python-docs",
        str(folder / "ours"),
        vocabulary_size=500,
        max_documents=200,
    )
    plain = train_vocabulary(
        "builtin:python-docs",
        str(folder / "plain"),
        vocabulary_size=PLAIN_PIECES,
        num_sentinels=0,
        add_mask_token=False,
        max_documents=200,
    )
    return {"ours": ours["model_file"], "plain": plain["model_file"]}


def _our_tokenizer(vocabularies):
    return keras_hub.models.T5Tokenizer(proto=vocabularies["ours"])


def _randomize(backbone, seed=0):
    # Layer norms at 1 and a zero spare column would hide a swapped weight:
    # every weight drawn anew, kernels at T5's fan-in scale.
    rng = np.random.default_rng(seed)
    embeddings = backbone.token_embedding.embeddings
    for variable in backbone.weights:
        shape = tuple(variable.shape)
        if variable is embeddings:
            value = rng.normal(0, 1.0, shape)
        elif len(shape) == 1:
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0, shape[0] ** -0.5, shape)
        variable.assign(value.astype("float32"))


def _our_backbone(tie=False, activation="gelu", seed=0):
    config = spactor_presets.backbone_config("spactor_t5_nano", 500)
    config.update(
        tie_embedding_weights=tie,
        activation=activations.keras_activation(activation)
        if activation == "gelu_new"
        else activation,
    )
    backbone = keras_hub.models.T5Backbone(**config)
    _randomize(backbone, seed)
    return backbone


@pytest.fixture(scope="module")
def exported(tmp_path_factory, vocabularies):
    """A `SpacTorT5` of the nano preset (untied, exact GELU), random
    weights throughout, and its export (shared by several tests: CI time)."""
    model = keras_spactor.SpacTorT5.from_preset(
        "spactor_t5_nano", tokenizer=_our_tokenizer(vocabularies)
    )
    _randomize(model.backbone)
    directory = tmp_path_factory.mktemp("exported")
    keras_spactor.export_to_transformers(model, str(directory))
    return model.backbone, str(directory), model


def _copy(exported, tmp_path):
    directory = str(tmp_path / "copy")
    shutil.copytree(exported[1], directory)
    return directory


# --- No PyTorch needed -----------------------------------------------------


def _assert_same_backbone(backbone, imported):
    config, imported_config = backbone.get_config(), imported.get_config()
    config.pop("name"), imported_config.pop("name")
    assert imported_config == config
    assert len(imported.weights) == len(backbone.weights)
    for ours, theirs in zip(backbone.weights, imported.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


@pytest.mark.parametrize(
    "tie, activation", [(True, "relu"), (False, "gelu_new")]
)
def test_export_then_import_gives_identical_weights(tmp_path, tie, activation):
    backbone = _our_backbone(tie=tie, activation=activation)
    export_to_transformers(backbone, str(tmp_path))
    imported, _ = load_transformers_checkpoint(str(tmp_path))
    _assert_same_backbone(backbone, imported)


def test_export_then_import_of_our_preset_shape(exported):
    backbone, directory, model = exported
    imported, tokenizer = load_transformers_checkpoint(directory)
    _assert_same_backbone(backbone, imported)
    assert tokenizer.get_vocabulary() == model.tokenizer.get_vocabulary()


def test_export_writes_what_transformers_reads(exported):
    model = exported[2]
    tokenizer = model.tokenizer
    directory = pathlib.Path(exported[1])
    files = os.listdir(directory)
    with open(directory / "config.json") as f:
        config = json.load(f)
    with open(directory / "generation_config.json") as f:
        generation = json.load(f)
    # Every embedding row, the mask id's (first past the tokenizer) too.
    assert config["vocab_size"] == ROWS
    assert model.mask_token_id == tokenizer.get_vocabulary().index("<mask>")
    # Our presets' exact GELU is transformers' gelu_python, not gated-gelu
    # (which transformers maps to the tanh approximation).
    assert config["feed_forward_proj"] == "gated-gelu_python"
    assert activations.dense_act_fn("gated-gelu") == ("gelu_new", True)
    assert config["tie_word_embeddings"] is False
    # keras-hub's T5Seq2SeqLMPreprocessor starts the decoder with <pad>.
    assert config["decoder_start_token_id"] == tokenizer.pad_token_id == 0
    assert generation["decoder_start_token_id"] == 0
    assert generation["eos_token_id"] == tokenizer.end_token_id == 1
    attention = model.backbone.encoder_transformer_layers[0].self_attention
    assert config["relative_attention_num_buckets"] == (
        attention.relative_attention_buckets
    )
    assert config["relative_attention_max_distance"] == (
        attention.relative_attention_max_distance
    )
    with open(directory / "tokenizer_config.json") as f:
        tokenizer_config = json.load(f)
    # The sentinels are pieces of our proto: transformers adds none.
    assert tokenizer_config["extra_ids"] == 0
    sentinels = tokenizer_config["additional_special_tokens"]
    assert len(sentinels) == 100 and sentinels[0] == "<extra_id_0>"
    assert "spiece.model" in files and "model.safetensors" in files


def test_sharded_export_splits_and_indexes_every_weight(tmp_path, exported):
    backbone = exported[0]
    files = export_to_transformers(
        backbone, str(tmp_path), max_shard_bytes=100_000
    )
    with open(tmp_path / safetensors_io.INDEX_FILE) as f:
        index = json.load(f)
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2 and set(shards) <= set(files)
    assert not (tmp_path / safetensors_io.SINGLE_FILE).exists()
    total = 0
    for shard in shards:
        size = os.path.getsize(tmp_path / shard)
        # One embedding (512 x 64 float32) is larger than a shard allows.
        assert size < 100_000 + 2 * ROWS * 64 * 4
        with open(tmp_path / shard, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        header.pop("__metadata__")
        assert {index["weight_map"][k] for k in header} == {shard}
        total += sum(
            v["data_offsets"][1] - v["data_offsets"][0] for v in header.values()
        )
    assert total == index["metadata"]["total_size"]
    imported, _ = load_transformers_checkpoint(str(tmp_path))
    for ours, theirs in zip(backbone.weights, imported.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_safetensors_reads_a_file_written_from_the_specification(tmp_path):
    # Built by hand from the format's description: u64 header size, JSON
    # header, little-endian row-major data; bfloat16 is a float32's top half.
    floats = np.array([[1.5, -2.0, 3.25], [0.0, 7.0, -0.5]], "<f4")
    bf16 = (np.array([1.0, -3.5], "<f4").view("<u4") >> 16).astype("<u2")
    header = {
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "b": {"dtype": "BF16", "shape": [2], "data_offsets": [24, 28]},
        "c": {"dtype": "I64", "shape": [1], "data_offsets": [28, 36]},
    }
    encoded = json.dumps(header).encode()
    path = tmp_path / "hand.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded)
        f.write(floats.tobytes() + bf16.tobytes())
        f.write(np.array([-9], "<i8").tobytes())
    tensors = safetensors_io.read_file(str(path))
    np.testing.assert_array_equal(tensors["a"], floats)
    np.testing.assert_array_equal(tensors["b"], [1.0, -3.5])
    assert tensors["c"].tolist() == [-9]
    safetensors_io.write_file(str(tmp_path / "again.safetensors"), tensors)
    with open(tmp_path / "again.safetensors", "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        written = json.loads(f.read(length))
        data = f.read()
    start, end = written["a"]["data_offsets"]
    assert written["a"]["dtype"] == "F32" and written["a"]["shape"] == [2, 3]
    assert data[start:end] == floats.tobytes()


def test_gelu_approximate_is_the_tanh_formula_not_the_exact_gelu():
    x = np.linspace(-6, 6, 2001).astype("float32")
    tanh_formula = (
        0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    )
    approximate = keras.ops.convert_to_numpy(
        activations.gelu_approximate(keras.ops.convert_to_tensor(x))
    )
    exact = keras.ops.convert_to_numpy(keras.activations.gelu(x))
    np.testing.assert_allclose(approximate, tanh_formula, atol=2e-6)
    # The trap: the two GELUs differ by far more than the 1e-4 we promise.
    assert np.abs(exact - tanh_formula).max() > 1e-4
    # And the import maps each of transformers' names to the right one.
    assert activations.keras_activation("gelu_new") is (
        activations.gelu_approximate
    )
    assert activations.keras_activation("gelu") == "gelu"


def _edit_config(directory, **changes):
    path = os.path.join(directory, "config.json")
    with open(path) as f:
        config = json.load(f)
    config.update(changes)
    with open(path, "w") as f:
        json.dump(config, f)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"relative_attention_num_buckets": 64}, "64 buckets"),
        ({"relative_attention_max_distance": 256}, "distance 256"),
        ({"num_decoder_layers": 3}, "3 decoder layers"),
        ({"feed_forward_proj": "gated-quick_gelu"}, "'quick_gelu'"),
    ],
)
def test_import_refuses_what_t5_backbone_cannot_hold(
    tmp_path, exported, changes, message
):
    directory = _copy(exported, tmp_path)
    _edit_config(directory, **changes)
    with pytest.raises(ValueError, match=message):
        load_transformers_checkpoint(directory)


def test_import_reads_both_tied_output_conventions(tmp_path, exported):
    """transformers 4 says `tie_word_embeddings: false` for T5 v1.1;
    transformers 5 writes `tie_word_embeddings: true` with
    `scale_decoder_outputs: false`. Both mean an unscaled, untied head."""
    backbone = exported[0]
    directory = _copy(exported, tmp_path)
    _edit_config(
        directory, tie_word_embeddings=True, scale_decoder_outputs=False
    )
    imported, _ = load_transformers_checkpoint(directory)
    assert not imported.tie_embedding_weights
    np.testing.assert_array_equal(
        imported.token_embedding.reverse_embeddings.numpy(),
        backbone.token_embedding.reverse_embeddings.numpy(),
    )
    # A tied, scaled head whose lm_head differs cannot be represented.
    _edit_config(directory, scale_decoder_outputs=True)
    with pytest.raises(ValueError, match="lm_head.weight differs"):
        load_transformers_checkpoint(directory)


def test_hf_prefix_resolves_through_huggingface_hub(
    tmp_path, exported, monkeypatch
):
    """`hf://owner/name` is fetched with `huggingface_hub` (here served
    from a local folder) and continues pre-training as a SpacTorT5."""
    import huggingface_hub

    source = exported[2]
    tokenizer = source.tokenizer
    shutil.copytree(exported[1], tmp_path / "hub" / "me" / "tiny-t5")
    requests = []

    def hf_hub_download(repo_id, filename, **kwargs):
        requests.append(("file", repo_id, filename))
        return str(tmp_path / "hub" / repo_id / filename)

    def snapshot_download(repo_id, allow_patterns=None, **kwargs):
        requests.append(("snapshot", repo_id, tuple(allow_patterns)))
        return str(tmp_path / "hub" / repo_id)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    model = keras_spactor.SpacTorT5.from_preset("hf://me/tiny-t5", tau=1)
    assert requests[0] == ("file", "me/tiny-t5", "config.json")
    assert requests[1][:2] == ("snapshot", "me/tiny-t5")
    assert "*.safetensors" in requests[1][2]
    for ours, theirs in zip(source.backbone.weights, model.backbone.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert model.mask_token_id == source.mask_token_id
    assert model.tokenizer.get_vocabulary() == tokenizer.get_vocabulary()


# --- Against transformers and PyTorch -------------------------------------


def _transformers():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    return torch, transformers


def _hf_checkpoint(directory, vocabularies, family, seed=0, **overrides):
    """A random transformers T5 saved as the Hub's T5 repositories are:
    `save_pretrained` weights, the plain `spiece.model` and a tokenizer
    config that lets transformers add 100 sentinels."""
    torch, transformers = _transformers()
    torch.manual_seed(seed)
    settings = dict(FAMILIES[family], **overrides)
    config = transformers.T5Config(
        vocab_size=ROWS,
        dropout_rate=0.0,
        decoder_start_token_id=0,
        **settings,
    )
    model = transformers.T5ForConditionalGeneration(config).eval()
    with torch.no_grad():
        if not settings["tie_word_embeddings"]:
            # transformers 5 ties every T5's head at construction; a
            # v1.1 checkpoint's head is its own matrix.
            model.lm_head.weight = torch.nn.Parameter(
                torch.randn_like(model.shared.weight)
            )
        for name, parameter in model.named_parameters():
            if "layer_norm" in name:
                parameter.uniform_(0.5, 1.5)
            if "relative_attention_bias" in name:
                parameter.mul_(5.0)  # position effects well above 1e-4
    model.save_pretrained(directory)
    shutil.copy(vocabularies["plain"], os.path.join(directory, "spiece.model"))
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "T5Tokenizer", "extra_ids": 100}, f)
    return model


def _keras_lm(backbone, tokenizer, encoder_length=64):
    preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer, encoder_sequence_length=encoder_length
    )
    return keras_hub.models.T5Seq2SeqLM(
        backbone=backbone, preprocessor=preprocessor
    )


def _batch(hf_tokenizer, sentences=SENTENCES, targets=LABELS + ["x"]):
    encoded = hf_tokenizer(sentences, padding=True, return_tensors="np")
    labels = hf_tokenizer(targets, padding=True, return_tensors="np")
    # Decoder inputs of one fixed length, the padding masked off.
    length = labels["input_ids"].shape[1]
    assert length <= GREEDY_STEPS
    decoder_ids = np.zeros((len(targets), GREEDY_STEPS + 1), "int32")
    decoder_ids[:, 1 : length + 1] = labels["input_ids"]  # after <pad>
    decoder_mask = np.zeros_like(decoder_ids)
    decoder_mask[:, 0] = 1
    decoder_mask[:, 1 : length + 1] = labels["attention_mask"]
    return {
        "encoder_token_ids": encoded["input_ids"].astype("int32"),
        "encoder_padding_mask": encoded["attention_mask"].astype("int32"),
        "decoder_token_ids": decoder_ids.astype("int32"),
        "decoder_padding_mask": decoder_mask.astype("int32"),
    }


def _hf_outputs(torch, model, batch):
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(batch["encoder_token_ids"]).long(),
            attention_mask=torch.tensor(batch["encoder_padding_mask"]),
            decoder_input_ids=torch.tensor(batch["decoder_token_ids"]).long(),
            decoder_attention_mask=torch.tensor(batch["decoder_padding_mask"]),
        )
    return out.encoder_last_hidden_state.numpy(), out.logits.numpy()


def _logits_model(lm):
    # The task without its preprocessor, compiled once per shape by
    # `predict_on_batch`.
    inputs = {
        name: keras.Input(shape=(None,), dtype="int32", name=name)
        for name in (
            "encoder_token_ids",
            "encoder_padding_mask",
            "decoder_token_ids",
            "decoder_padding_mask",
        )
    }
    outputs = dict(lm.backbone(inputs), logits=lm(inputs))
    return keras.Model(inputs, outputs)


def _keras_outputs(model, batch):
    outputs = model.predict_on_batch(batch)
    return outputs["encoder_sequence_output"], outputs["logits"]


def _keras_greedy(backbone, batch, steps=GREEDY_STEPS, eos=1):
    """keras-hub's `T5Seq2SeqLM.generate` (cached decoding), greedy, on
    token ids: `steps` tokens after the `<pad>` that starts the decoder."""
    lm = keras_hub.models.T5Seq2SeqLM(backbone=backbone, preprocessor=None)
    lm.compile(sampler="greedy")
    rows = len(batch["encoder_token_ids"])
    prompt_mask = np.zeros((rows, steps + 1), "int32")
    prompt_mask[:, 0] = 1
    outputs = lm.generate(
        {
            "encoder_token_ids": batch["encoder_token_ids"],
            "encoder_padding_mask": batch["encoder_padding_mask"],
            "decoder_token_ids": np.zeros_like(prompt_mask),
            "decoder_padding_mask": prompt_mask,
        },
        stop_token_ids=None,
    )
    tokens = np.asarray(outputs["decoder_token_ids"])[:, 1:]
    # As transformers does: <pad> after a sequence's EOS.
    ended = np.cumsum(tokens == eos, axis=1) - (tokens == eos) > 0
    return np.where(ended, 0, tokens)


def _hf_greedy(torch, model, batch, steps=GREEDY_STEPS):
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor(batch["encoder_token_ids"]).long(),
            attention_mask=torch.tensor(batch["encoder_padding_mask"]),
            max_new_tokens=steps,
            do_sample=False,
            num_beams=1,
        )
    tokens = out.numpy()[:, 1:]
    # transformers stops when every row has ended: pad to `steps`.
    return np.pad(tokens, ((0, 0), (0, steps - tokens.shape[1])))


def _hf_label_log_likelihoods(torch, model, hf_tokenizer, texts, labels):
    scores = np.zeros((len(texts), len(labels)))
    for i, text in enumerate(texts):
        for j, label in enumerate(labels):
            inputs = hf_tokenizer(text, return_tensors="pt")
            target = hf_tokenizer(label, return_tensors="pt")["input_ids"]
            with torch.no_grad():
                logits = model(**inputs, labels=target).logits
            log_probs = torch.log_softmax(logits.double(), -1)[0]
            scores[i, j] = log_probs[range(target.shape[1]), target[0]].sum()
    return scores


def _assert_close_where_real(ours, theirs, mask, atol=1e-4):
    real = mask.astype(bool)
    np.testing.assert_allclose(ours[real], theirs[real], atol=atol, rtol=0)


@pytest.mark.transformers
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_import_matches_transformers(tmp_path, vocabularies, family):
    from keras_spactor.evaluation import label_log_likelihoods

    torch, transformers = _transformers()
    hf_model = _hf_checkpoint(str(tmp_path), vocabularies, family)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    backbone, tokenizer = load_transformers_checkpoint(str(tmp_path))
    # The sentinels get transformers' ids (T5: <extra_id_0> = 32099).
    assert tokenizer.vocabulary_size() == len(hf_tokenizer) == 500
    for index in (0, 1, 99):
        piece = f"<extra_id_{index}>"
        assert tokenizer.token_to_id(piece) == (
            hf_tokenizer.convert_tokens_to_ids(piece)
        )
    for sentence in SENTENCES:
        ours = keras.ops.convert_to_numpy(tokenizer(sentence)).tolist()
        theirs = hf_tokenizer(sentence, add_special_tokens=False)
        assert ours == theirs["input_ids"]

    lm = _keras_lm(backbone, tokenizer)
    batch = _batch(hf_tokenizer)
    assert batch["encoder_padding_mask"].min() == 0  # real padding
    hf_encoder, hf_logits = _hf_outputs(torch, hf_model, batch)
    model = _logits_model(lm)
    encoder, logits = _keras_outputs(model, batch)
    _assert_close_where_real(encoder, hf_encoder, batch["encoder_padding_mask"])
    _assert_close_where_real(logits, hf_logits, batch["decoder_padding_mask"])

    generated = _keras_greedy(lm.backbone, batch)
    np.testing.assert_array_equal(generated, _hf_greedy(torch, hf_model, batch))

    ours = label_log_likelihoods(lm, SENTENCES, LABELS)
    theirs = _hf_label_log_likelihoods(
        torch, hf_model, hf_tokenizer, SENTENCES, LABELS
    )
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


@pytest.mark.transformers
def test_each_trap_moves_the_logits_past_the_tolerance(tmp_path, vocabularies):
    """What each mapping guards against: with the exact GELU for gated-gelu,
    without the tied head's d_model**-0.5, or with another bucket count,
    the logits leave 1e-4."""
    torch, transformers = _transformers()
    for family in ("t5_v1_1", "t5"):
        directory = str(tmp_path / family)
        hf_model = _hf_checkpoint(directory, vocabularies, family)
        hf_tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
        batch = _batch(hf_tokenizer)
        _, hf_logits = _hf_outputs(torch, hf_model, batch)
        mask = batch["decoder_padding_mask"].astype(bool)
        backbone, tokenizer = load_transformers_checkpoint(directory)
        config = backbone.get_config()
        if family == "t5_v1_1":
            config["activation"] = "gelu"  # keras-hub's, the exact one
        wrong = keras_hub.models.T5Backbone.from_config(config)
        wrong.set_weights(backbone.get_weights())
        _, logits = _keras_outputs(
            _logits_model(_keras_lm(wrong, tokenizer)), batch
        )
        if family == "t5":
            logits = logits * backbone.hidden_dim**0.5  # no scaling
        assert np.abs(logits - hf_logits)[mask].max() > 1e-3

    # Another bucket count: refused by name, not imported wrongly.
    directory = str(tmp_path / "buckets")
    _hf_checkpoint(
        directory, vocabularies, "t5", relative_attention_num_buckets=16
    )
    _edit_config(directory, relative_attention_num_buckets=32)
    with pytest.raises(ValueError, match="shape"):
        load_transformers_checkpoint(directory)  # (16, 4) is not (32, 4)
    _edit_config(directory, relative_attention_num_buckets=16)
    with pytest.raises(ValueError, match="16 buckets"):
        load_transformers_checkpoint(directory)


@pytest.mark.transformers
@pytest.mark.parametrize("tie", [False, True])
def test_export_loads_in_transformers_and_matches(tmp_path, vocabularies, tie):
    torch, transformers = _transformers()
    tokenizer = _our_tokenizer(vocabularies)
    backbone = _our_backbone(tie=tie, activation="relu" if tie else "gelu")
    lm = _keras_lm(backbone, tokenizer)
    # Sharded when untied, to load the index as transformers writes it.
    shard = 200_000 if not tie else safetensors_io.DEFAULT_MAX_SHARD_BYTES
    export_to_transformers(lm, str(tmp_path), max_shard_bytes=shard)
    hf_model, info = transformers.T5ForConditionalGeneration.from_pretrained(
        str(tmp_path), output_loading_info=True
    )
    hf_model.eval()
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not info["mismatched_keys"]
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert len(hf_tokenizer) == tokenizer.vocabulary_size() == 500
    for piece in ("<extra_id_0>", "<extra_id_99>", "<mask>", "</s>"):
        assert hf_tokenizer.convert_tokens_to_ids(piece) == (
            tokenizer.token_to_id(piece)
        )
    for sentence in SENTENCES:
        ours = keras.ops.convert_to_numpy(tokenizer(sentence)).tolist()
        theirs = hf_tokenizer(sentence, add_special_tokens=False)
        assert ours == theirs["input_ids"]
    batch = _batch(hf_tokenizer)
    hf_encoder, hf_logits = _hf_outputs(torch, hf_model, batch)
    model = _logits_model(lm)
    encoder, logits = _keras_outputs(model, batch)
    _assert_close_where_real(encoder, hf_encoder, batch["encoder_padding_mask"])
    _assert_close_where_real(logits, hf_logits, batch["decoder_padding_mask"])
    generated = _keras_greedy(lm.backbone, batch)
    np.testing.assert_array_equal(generated, _hf_greedy(torch, hf_model, batch))


@pytest.mark.transformers
def test_continue_pretraining_an_imported_checkpoint(tmp_path, vocabularies):
    """A transformers T5 v1.1 continues pre-training with SpacTor, in
    Python and through the CLI, with a fresh generator and heads."""
    from keras_spactor import cli
    from keras_spactor.data import pretraining_dataset

    _transformers()
    directory = str(tmp_path / "hf")
    _hf_checkpoint(directory, vocabularies, "t5_v1_1")
    # One stage compiled per run (CI time): the hybrid one.
    model = keras_spactor.SpacTorT5.from_preset(directory, tau=10)
    # The first row past the 500 pieces, free in the 512-row embedding.
    assert model.mask_token_id == 500
    before = model.backbone.token_embedding.embeddings.numpy().copy()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    dataset = pretraining_dataset(
        "builtin:python-docs", model.tokenizer, batch_size=2, inputs_length=32
    )
    history = model.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    after = model.backbone.token_embedding.embeddings.numpy()
    assert np.abs(after - before).max() > 0

    output = tmp_path / "run"
    cli.main(
        [
            "pretrain",
            "--preset",
            directory,
            "--steps",
            "2",
            "--tau",
            "2",
            "--batch-size",
            "2",
            "--inputs-length",
            "32",
            "--output-dir",
            str(output),
        ]
    )
    with open(output / "summary.json") as f:
        assert json.load(f)["steps"] == 2
    resumed, _ = load_transformers_checkpoint(directory)
    saved = keras_hub.models.T5Backbone.from_preset(str(output / "preset"))
    assert (
        saved.get_config()["activation"] == resumed.get_config()["activation"]
    )


def test_cli_export_writes_the_checkpoint_and_checks_its_arguments(
    tmp_path, exported, capsys
):
    from keras_spactor import cli

    model = exported[2]
    preset = str(tmp_path / "preset")
    model.save_to_preset(preset)
    output = str(tmp_path / "transformers")
    cli.main(["export", "--preset", preset, "--output-dir", output])
    imported, tokenizer = load_transformers_checkpoint(output)
    _assert_same_backbone(model.backbone, imported)
    assert tokenizer.get_vocabulary() == model.tokenizer.get_vocabulary()
    capsys.readouterr()
    for argv, message in [
        (["--preset", str(tmp_path / "none")], "does not exist"),
        (["--preset", preset, "--output-dir", output], "already holds"),
    ]:
        argv = ["export", "--output-dir", str(tmp_path / "new")] + argv
        with pytest.raises(SystemExit):
            cli.main(argv)
        error = capsys.readouterr().err.strip()
        assert message in error and len(error.splitlines()) == 1
