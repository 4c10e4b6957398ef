"""
Title: Fine-tuning a SpacTor model with keras-hub
Author: keras-spactor contributors
Date created: 2026/11/26
Last modified: 2026/12/05
Description: Fine-tune a SpacTor-pre-trained T5 preset on SST-2 with keras-hub's T5Seq2SeqLM and generate labels greedily; export it to Hugging Face transformers, and continue pre-training a transformers T5.
Accelerator: GPU
"""

"""
## Introduction

A model pre-trained with keras-spactor is saved as an ordinary keras-hub T5
preset: the generator and the replaced-token-detection head that SpacTor
uses during pre-training are extra files that keras-hub ignores. So
fine-tuning needs nothing from keras-spactor: `keras_hub.models.T5Seq2SeqLM`
loads the preset with its tokenizer and trains it text to text. (One
optional call from keras-spactor makes its steps several times faster on a
GPU; see below.)

This guide fine-tunes such a preset on SST-2 (sentiment of movie-review
sentences): the encoder reads the sentence, the decoder writes `positive` or
`negative`. We score it the way T5 and T0 score classification, by rank
classification (which label string does the model find most likely?), and
also by exact match of the generated words.

It fine-tunes the preset that the guide *Pre-training T5 with SpacTor on a
TPU* writes (`SPACTOR_GUIDE_PRESET`, default `runs/guides/preset`): run that
guide first, at the same size. By default (`SPACTOR_GUIDE_SIZE=small`) both
run anywhere, offline, in about a minute each: this one then fine-tunes the
toy pre-trained model for a few steps on 40 labelled sentences shipped with
keras-spactor, and its accuracy means nothing. With
`SPACTOR_GUIDE_SIZE=full` it fine-tunes the base-size preset on all of
SST-2.
"""

"""
## Setup
"""

"""
Install keras-spactor from its wheel (`python -m build --wheel` in a
checkout; in Colab, upload the wheel first) or with
`pip install "git+<the repository's URL>"`; `pip install -e .` in a
checkout for development.
"""

"""shell
pip install -q keras_spactor-0.1.0-py3-none-any.whl
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from keras_spactor.evaluation import generate_labels
from keras_spactor.evaluation import rank_classify
from keras_spactor.labelled_data import read_labelled
from keras_spactor.layers import use_one_hot_position_bias

"""
## Settings

Everything that depends on the size lives in this cell.
"""

SMALL = os.environ.get("SPACTOR_GUIDE_SIZE", "small") == "small"
OUTPUT_DIR = os.environ.get("SPACTOR_GUIDE_OUTPUT", "runs/guides")
PRESET = os.environ.get(
    "SPACTOR_GUIDE_PRESET", os.path.join(OUTPUT_DIR, "preset")
)
if SMALL:
    DATA = "builtin:sentiment-tiny"  # shipped with keras-spactor
    BATCH_SIZE, EPOCHS, LEARNING_RATE = 8, 1, 1e-3
else:
    DATA = "tfds:glue/sst2"  # downloaded and prepared on first use
    BATCH_SIZE, EPOCHS, LEARNING_RATE = 32, 3, 1e-4

keras.utils.set_random_seed(0)
if not os.path.isdir(PRESET):
    raise FileNotFoundError(
        f"No preset at {PRESET}: run the pre-training guide first."
    )
print("Preset:", PRESET, sorted(os.listdir(PRESET)))

"""
## The data

`read_labelled` reads labelled text from a `label<TAB>text` file, from
the small sets shipped with keras-spactor (`builtin:sentiment-tiny`, 40 +
16 sentences) or from TensorFlow Datasets (`tfds:glue/sst2`): the label
is returned as its class name (`negative`, `positive`), which the decoder
learns to write. `keras-spactor finetune --train ... --validation ...`
reads the same sources.
"""

train_labels, train_texts = read_labelled(DATA, "train")
val_labels, val_texts = read_labelled(DATA, "validation")
print(f"{len(train_texts)} training and {len(val_texts)} validation examples")
print(train_labels[0], "|", train_texts[0])

"""
## Fine-tuning with `T5Seq2SeqLM`

`T5Seq2SeqLM.from_preset` loads the backbone, the tokenizer and a
preprocessor that turns `{"encoder_text", "decoder_text"}` into token ids
with teacher forcing. SST-2 sentences are short and the labels are one
word, so we shorten both sequence lengths. `compile(sampler="greedy")`
makes `generate` pick the most likely token at each step (keras-hub's
default samples from the top k).

`use_one_hot_position_bias` is the optional call: keras-hub's T5 looks up
its relative position bias with a gather, whose gradient a GPU runs as
slow atomic adds (at T5-base, most of a training step's time on an H200).
The one-hot form gives the same values and leaves the weights and the
saved preset as they are.
"""

seq2seq = keras_hub.models.T5Seq2SeqLM.from_preset(PRESET)
use_one_hot_position_bias(seq2seq)
seq2seq.preprocessor.encoder_sequence_length = 64
seq2seq.preprocessor.decoder_sequence_length = 8
seq2seq.compile(
    optimizer=keras.optimizers.AdamW(LEARNING_RATE),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    weighted_metrics=["sparse_categorical_accuracy"],
    sampler="greedy",
)
train = (
    tf.data.Dataset.from_tensor_slices(
        {"encoder_text": train_texts, "decoder_text": train_labels}
    )
    .shuffle(len(train_texts), seed=0)
    .batch(BATCH_SIZE)
)
history = seq2seq.fit(train, epochs=EPOCHS, verbose=2)

"""
## Generating labels

`generate` takes the same dictionary, with an empty `decoder_text` as the
prompt, and returns the decoded strings. keras-spactor's `generate_labels`
calls it in batches.
"""

# `generate_labels` calls `seq2seq.generate` and decodes spare embedding
# rows (32,128 rows for T5's 32,100 pieces), which a barely trained model
# can still pick, as `<unk>` instead of failing.
predictions = [
    p.strip() for p in generate_labels(seq2seq, val_texts, max_length=8)
]
accuracy = float(np.mean([p == t for p, t in zip(predictions, val_labels)]))
for text, label, prediction in list(zip(val_texts, val_labels, predictions))[
    :3
]:
    print(f"{label:>8} | {prediction!r:>12} | {text[:60]}")
print(f"Exact-match accuracy: {accuracy:.3f}")

"""
Exact match is a blunt measure for small models: they often generate an
empty string or one label for everything. Rank classification asks the
model for the log-likelihood of each label (its tokens and EOS) and picks
the best, so every example gets one of the labels; compare it with the rate
of always answering the most frequent label.
"""

ranked = rank_classify(seq2seq, val_texts, sorted(set(train_labels)))
rank_accuracy = float(np.mean([p == t for p, t in zip(ranked, val_labels)]))
majority = max(val_labels.count(label) for label in set(val_labels))
print(f"Rank-classification accuracy: {rank_accuracy:.3f}")
print(f"Majority-class rate: {majority / len(val_labels):.3f}")

"""
## Saving the fine-tuned model

The fine-tuned model is again a keras-hub preset.
"""

finetuned_dir = os.path.join(OUTPUT_DIR, "finetuned_sst2")
seq2seq.save_to_preset(finetuned_dir)
restored = keras_hub.models.T5Seq2SeqLM.from_preset(finetuned_dir)
print("Restored:", restored.backbone.count_params(), "backbone parameters")

"""
## Fine-tuning in Hugging Face transformers instead

Most T5 fine-tuning, parameter-efficient tuning and serving code is written
for transformers' `T5ForConditionalGeneration`. `export_to_transformers`
(or `keras-spactor export --preset DIR --output-dir DIR`) writes the
pre-trained preset as a transformers checkpoint: `config.json`,
`generation_config.json`, `model.safetensors` and the tokenizer
(`spiece.model` with T5's `<extra_id_N>` at the ids the model was trained
with). Every embedding row is written, also those past the tokenizer's
pieces, so that the model is the same model: the tokenizer never produces
them, and transformers decodes them as nothing.
"""

import keras_spactor

export_dir = os.path.join(OUTPUT_DIR, "transformers")
print(keras_spactor.export_to_transformers(PRESET, export_dir))

"""
With PyTorch and transformers installed (Colab has both), the export loads
as any T5 and computes what the Keras model computes (keras-spactor's tests
hold the two to 1e-4, in both directions); from there, transformers'
`Seq2SeqTrainer` or PEFT fine-tune it as they would `google/t5-v1_1-small`.
"""

try:
    import torch
    import transformers
except ImportError:
    transformers = None
    print("transformers or PyTorch is not installed: skipping the comparison.")
if transformers is not None:
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(export_dir)
    hf_model = transformers.T5ForConditionalGeneration.from_pretrained(
        export_dir
    ).eval()
    ids = hf_tokenizer(val_texts[:4], padding=True, return_tensors="np")
    start = np.zeros((len(ids["input_ids"]), 1), "int32")  # <pad> starts
    pretrained = keras_hub.models.T5Seq2SeqLM.from_preset(PRESET)
    keras_logits = keras.ops.convert_to_numpy(
        pretrained(
            {
                "encoder_token_ids": ids["input_ids"],
                "encoder_padding_mask": ids["attention_mask"],
                "decoder_token_ids": start,
                "decoder_padding_mask": np.ones_like(start),
            }
        )
    )
    with torch.no_grad():
        hf_logits = hf_model(
            input_ids=torch.tensor(ids["input_ids"]),
            attention_mask=torch.tensor(ids["attention_mask"]),
            decoder_input_ids=torch.tensor(start).long(),
        ).logits.numpy()
    print("Largest logit difference:", np.abs(keras_logits - hf_logits).max())

"""
## Continuing pre-training from a transformers checkpoint

The other way round, `SpacTorT5.from_preset` takes a transformers T5 —
original T5, T5 v1.1, FLAN-T5 or a `t5-efficient` shape — from the Hub
(`"hf://google/flan-t5-small"`) or from a folder `save_pretrained` wrote,
with its own tokenizer, and builds a fresh generator and RTD head around it
(the mask id is the first embedding row past the tokenizer's pieces:
32,100 for T5's vocabulary). That is how to adapt FLAN-T5 to a domain with
SpacTor's hybrid objective; `keras-spactor pretrain --preset
hf://google/flan-t5-small` does the same from the command line. At the small
size (offline) the folder written above stands in for FLAN-T5.
"""

from keras_spactor.callbacks import TauScheduler

source = export_dir if SMALL else "hf://google/flan-t5-small"
continued = keras_spactor.SpacTorT5.from_preset(source)
continued.compile(optimizer=keras.optimizers.Adafactor(1e-3))
domain_text = keras_spactor.data.pretraining_dataset(
    "builtin:python-docs",  # your domain's text here
    continued.tokenizer,
    batch_size=2 if SMALL else 32,
    inputs_length=64 if SMALL else 512,
)
steps = 2 if SMALL else 2000
continued.fit(
    domain_text,
    steps_per_epoch=steps,
    epochs=1,
    callbacks=[TauScheduler("50%")],
    verbose=2,
)
continued.save_to_preset(os.path.join(OUTPUT_DIR, "continued"))

"""
## Next steps

The command `keras-spactor finetune --preset <dir> --train <tsv>
--validation <tsv>` fine-tunes for a step budget with warmup and writes
`metrics.json` with the rank-classification accuracy, its 95% interval and
the majority-class rate; it is how this project checks downstream quality (see also the guide *What the tau
curriculum buys*).
"""
