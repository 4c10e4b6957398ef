"""A synthetic labelled task (does a sentence mention a cat?), its
word-level vocabulary and a tiny `T5Seq2SeqLM`, for the evaluation tests.

`tokenizer` and `preset` are module-scoped fixtures: import them into a
test module to use them.
"""

import io

import keras
import keras_hub
import numpy as np
import pytest

from keras_spactor.models.t5x_initialization import (
    initialize_embeddings_like_t5x,
)

WORDS = (
    "dog tree house river blue green runs sleeps big small car bird fish "
    "red old new sun moon road hill"
).split()
LABELS = ("absent", "present")


def cat_sentences(count, seed):
    """Random-word sentences, half with "cat"; the label says which."""
    rng = np.random.RandomState(seed)
    rows = []
    for i in range(count):
        words = list(rng.choice(WORDS, size=rng.randint(4, 9)))
        if i % 2:
            words.insert(rng.randint(len(words) + 1), "cat")
        rows.append((LABELS[i % 2], " ".join(words)))
    return [rows[i] for i in rng.permutation(count)]


def write_tsv(path, rows):
    """`(label, text)` rows as a `label<TAB>sentence` TSV; its path."""
    with open(path, "w") as f:
        f.write("label\tsentence\n")
        f.writelines(f"{label}\t{text}\n" for label, text in rows)
    return str(path)


@pytest.fixture(scope="module")
def tokenizer():
    """A word-level SentencePiece vocabulary of the synthetic task (one
    piece per word, T5's special ids)."""
    import sentencepiece as spm

    documents = [t for _, t in cat_sentences(400, seed=9)] + list(LABELS)
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(documents),
        model_writer=proto,
        model_type="word",
        vocab_size=64,
        hard_vocab_limit=False,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        minloglevel=2,
    )
    return keras_hub.models.T5Tokenizer(proto=proto.getvalue())


def tiny_lm(tokenizer, seed=0):
    """A 2+2-layer, 32-wide `T5Seq2SeqLM` (T5 v1.1 style) over `tokenizer`."""
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=tokenizer.vocabulary_size(),
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        key_value_dim=16,
        dropout=0.0,
        activation="gelu",
        use_gated_activation=True,
        tie_embedding_weights=False,
    )
    # keras-hub starts every token embedding near 1.0; a model trained from
    # scratch needs T5X's draws to tell its tokens apart.
    initialize_embeddings_like_t5x(backbone)
    preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer, encoder_sequence_length=16, decoder_sequence_length=8
    )
    return keras_hub.models.T5Seq2SeqLM(backbone, preprocessor=preprocessor)


@pytest.fixture(scope="module")
def preset(tokenizer, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("preset"))
    tiny_lm(tokenizer).save_to_preset(path)
    return path
