"""
Title: Pre-training T5 with SpacTor on a TPU
Author: keras-spactor contributors
Date created: 2026/11/26
Last modified: 2026/12/05
Description: Pre-train a T5 encoder-decoder on C4 with SpacTor's hybrid objective and two-stage curriculum, then load it with keras-hub.
Accelerator: TPU
"""

"""
## Introduction

SpacTor ([Ye et al., 2024](https://arxiv.org/abs/2401.13160)) pre-trains a
T5 encoder-decoder with two objectives at once for the first `tau` steps:

- T5's **span corruption** (SC): the decoder reconstructs spans of the input
  that were replaced by sentinels;
- ELECTRA's **replaced-token detection** (RTD): a small generator fills
  `<mask>`ed input tokens with plausible guesses and the T5 encoder learns
  to tell which tokens were replaced.

From step `tau` on, the generator is dropped and training continues with
plain span corruption. The paper reports T5's downstream quality with half
the steps and about 40% fewer FLOPs.

This guide pre-trains such a model with `keras_spactor`, a Keras 3 library
built on keras-hub's `T5Backbone`:

1. stream C4 from the Hugging Face Hub as span-corruption batches,
2. describe the run as a `PretrainingConfig`: a `SpacTorT5` from a preset,
   spread over the TPU's cores, switched to plain span corruption by the
   `TauScheduler` callback,
3. train it with `PretrainingRun`, which checkpoints it (a disconnected
   runtime resumes where it stopped) and logs to TensorBoard,
4. save the result as a keras-hub preset and load it back with
   `keras_hub.models.T5Backbone` and `keras_hub.models.T5Seq2SeqLM`.

The guide has two sizes. By default (`SPACTOR_GUIDE_SIZE=small`) it trains a
tiny model for a few steps on a corpus embedded in the library, with a small
vocabulary trained on the fly, so it runs anywhere in under a minute. Set
`SPACTOR_GUIDE_SIZE=full` on a Colab TPU for the real run: T5 v1.1 base
shapes, T5's vocabulary and C4.
"""

"""
## Setup

Install keras-spactor (it pulls in Keras 3, keras-hub, TensorFlow,
tensorflow-text and tensorflow-datasets). Colab has no checkout: install
the wheel (`python -m build --wheel` in a checkout writes it to `dist/`;
upload it to the runtime), or straight from the repository with
`pip install "git+<the repository's URL>"`. The package declares version
ranges, so the jax and libtpu a Colab TPU runtime ships stay as they are.
For development, `pip install -e .` in a checkout.
"""

"""
The full run reads C4 from the Hugging Face Hub: add the `hub` extra
(`huggingface_hub` and `pyarrow`).
"""

"""shell
pip install -q "keras_spactor-0.1.0-py3-none-any.whl[hub]"
"""

"""
Pick the Keras backend before importing Keras. The default here is JAX,
as on a Colab TPU runtime: JAX sees the TPU's cores as its devices and
`keras.distribution` shards each batch over them. The TensorFlow backend
with `tf.distribute.TPUStrategy` works too: set `KERAS_BACKEND=tensorflow`
before running this guide.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras_hub

import keras_spactor
from keras_spactor.data import span_corruption_lengths

"""
## Settings

Everything that depends on the size lives in this cell; the rest of the
guide reads the same for both. The full settings follow the T5 v1.1 base
recipe (Adafactor at 0.01 with an inverse square root schedule, inputs of
512 tokens, batches of 128) for 100,000 steps, with the switch to plain
span corruption at a quarter of the run. On Colab, keep the outputs where
a disconnected runtime does not lose them: mount Google Drive and set
`SPACTOR_GUIDE_OUTPUT=/content/drive/MyDrive/spactor` (a `gs://` bucket
works too). Every `CHECKPOINT_EVERY` steps the run saves its full state
there; every `EVALUATE_EVERY` steps it measures held-out batches.
"""

SMALL = os.environ.get("SPACTOR_GUIDE_SIZE", "small") == "small"
OUTPUT_DIR = os.environ.get("SPACTOR_GUIDE_OUTPUT", "runs/guides")
if SMALL:
    PRESET = "spactor_t5_nano"  # 2+2 layers, width 64
    VOCABULARY = "builtin:python-docs"  # trained on the fly, then cached
    DATA = "builtin:python-docs"  # Python's own docs, no download
    BATCH_SIZE = 4
    INPUTS_LENGTH = 64
    STEPS = 4
    TAU = 2
    WARMUP_STEPS = 2
    STEPS_PER_EXECUTION = 1
    CHECKPOINT_EVERY = EVALUATE_EVERY = 2
    VALIDATION_STEPS = 2  # held-out batches per evaluation
    MIXED_PRECISION = False  # bfloat16 is for TPUs and GPUs
else:
    PRESET = "spactor_t5_base"  # T5 v1.1 base shapes
    VOCABULARY = "t5_1.1_base"  # T5's SentencePiece model, from keras-hub
    # C4's 1,024 English training shards on the Hub, read one at a time.
    DATA = "hf:allenai/c4/en/c4-train.*.json.gz"
    BATCH_SIZE = 128
    INPUTS_LENGTH = 512
    STEPS = 100_000
    TAU = 25_000
    WARMUP_STEPS = 10_000
    STEPS_PER_EXECUTION = 100
    CHECKPOINT_EVERY = 2_000
    EVALUATE_EVERY = 5_000
    VALIDATION_STEPS = 20  # from C4's own validation shards
    MIXED_PRECISION = True

TARGETS_LENGTH = span_corruption_lengths(INPUTS_LENGTH)[1]
print(f"inputs {INPUTS_LENGTH} tokens -> targets {TARGETS_LENGTH} tokens")

"""
## Connect to the TPU

`keras_spactor.distribution.distribute(BATCH_SIZE)` spreads training over
every device the backend sees and returns the scope to build the model in;
the run below calls it for you (`distribution="data"`). With JAX, Keras
finds the TPU by itself: it sets a `DataParallel` distribution that splits
each batch over the TPU's cores (or the local CPU or GPUs elsewhere;
`distribution="model"` with `model_shards` also shards the large kernels,
for models that do not fit one core). With TensorFlow, it connects to the
TPU through `TPUClusterResolver` and uses a `TPUStrategy` (or a
`MirroredStrategy` when there is no TPU).

### On a pod slice

A pod slice (v4-32, v5e-16, ...) has several hosts, and each runs this
same program (`gcloud compute tpus tpu-vm ssh ... --worker=all`). With
JAX, join them before anything else runs, then go on as below with
`OUTPUT_DIR` a folder every host sees (a `gs://` bucket):

```python
keras_spactor.distribution.initialize_processes()  # the pod gives the rest
```

Every host then reads the same global batches and hands its devices their
rows; process 0 writes the run's files, and the others save their copies
of each checkpoint (saving runs collectives) to a scratch folder of their
own. `keras-spactor pretrain --multi-process` does the same from a shell.
"""

"""
## The vocabulary

SpacTor needs a `[MASK]` token for the generator, which T5's vocabulary
lacks. For T5's 32,100-piece SentencePiece model, the library uses id
32,100, the first spare row of T5's 32,128-row embedding. The small run
trains a 2,000-piece vocabulary on the embedded corpus instead (a few
seconds, then cached); it has its own `<mask>` piece.
"""

tokenizer = keras_spactor.data.load_vocabulary(VOCABULARY)
print("Vocabulary size:", tokenizer.vocabulary_size())

"""
## The data

`pretraining_dataset` implements seqio's `span_corruption` in tf.data:
documents are tokenized, concatenated and cut into chunks; 15% of each
chunk's tokens, in spans of mean length 3, are replaced by sentinels in the
inputs and become the targets. Batches are keras-hub's
`(x, y, sample_weight)` tuples, so any T5 model can `fit` on them.

`"hf:allenai/c4/en/c4-train.*.json.gz"` reads C4 as AllenAI publishes it
on the Hugging Face Hub: 1,024 shards of about 320 MB of gzipped JSON
lines (~305 GB in all). Nothing is downloaded whole: each shard is fetched
while the one before it trains, into a cache folder that holds two shards
at most (under 1 GB; `~/.cache/keras_spactor/hub`, or
`KERAS_SPACTOR_HUB_CACHE`) and deletes each once read. The run reads
100,000 x 128 examples of 568 raw tokens, ~7.3B tokens, about 1/20 of
C4's English split: ~50 shards, ~16 GB over the run. The shard order
follows `seed`; rate limits (HTTP 429), server errors and dropped
connections are retried with backoff.

FineWeb-Edu is the alternative:
`"hf:HuggingFaceFW/fineweb-edu/sample/10BT/*.parquet"` (parquet shards,
rewritten to JSON lines as they arrive: allow about 15 GB of cache). A
spec is `hf:OWNER/NAME[@REVISION]/PATTERN[?field=FIELD]`. If you have C4
built with TensorFlow Datasets, `"tfds:c4/en"` reads it (set
`TFDS_DATA_DIR`, e.g. `gs://<your-bucket>/tensorflow_datasets`); building
it yourself means ~7 TB of Common Crawl and an Apache Beam job.

A first batch, unshuffled (the run shuffles documents and examples):
"""

dataset = keras_spactor.data.pretraining_dataset(
    DATA,
    tokenizer,
    batch_size=BATCH_SIZE,
    inputs_length=INPUTS_LENGTH,
    shuffle_buffer=None,
)
x, y, sample_weight = next(iter(dataset))
print({key: tuple(value.shape) for key, value in x.items()})
print("encoder input:", tokenizer.detokenize(x["encoder_token_ids"][0]))
print("target:", tokenizer.detokenize(y[0]))

"""
## The run

`PretrainingConfig` holds every setting of a run (they are the options of
`keras-spactor pretrain`, and are checked here: a bad one raises
`keras_spactor.ConfigError` naming it). `PretrainingRun` then does what a
hand-written loop would, and what a long run needs besides:

- it builds `SpacTorT5.from_preset(PRESET, tokenizer=...)` (a randomly
  initialised T5 v1.1 shape with its generator, a quarter of the
  encoder's layers sharing the token embedding, and the RTD head) and
  compiles it with Adafactor and T5's inverse square root schedule, inside
  the distribution's scope;
- it trains with `TauScheduler(TAU)`, which switches from the hybrid
  objective to plain span corruption at optimizer step `TAU` inside the
  compiled train step (from then on the generator and RTD head neither run
  nor receive updates), and `TrainingProgress`, which adds the learning
  rate, the tokens seen and the training FLOPs to the logs;
- it logs to TensorBoard (`logs/`), evaluates held-out batches every
  `EVALUATE_EVERY` steps (`logs/validation`), and saves a checkpoint every
  `CHECKPOINT_EVERY` steps with the input stream's position, so that
  `resume=True` continues at the same step, stage and batch;
- it stops at the first non-finite loss without saving the broken state,
  and writes `preset/` and `summary.json` at the end.

The same by hand, without checkpoints and resume:

```python
with keras_spactor.distribution.distribute(BATCH_SIZE):
    model = keras_spactor.SpacTorT5.from_preset(PRESET, tokenizer=tokenizer)
    model.compile(optimizer=keras.optimizers.Adafactor(
        InverseSquareRootSchedule(peak=0.01, warmup_steps=WARMUP_STEPS)))
progress = TrainingProgress.for_model(model, BATCH_SIZE, INPUTS_LENGTH)
model.fit(dataset, epochs=..., steps_per_epoch=...,
          callbacks=[TauScheduler(TAU), progress,
                     keras.callbacks.TensorBoard(log_dir)])
```
"""

run_dir = os.path.join(OUTPUT_DIR, "run")
config = keras_spactor.PretrainingConfig(
    preset=PRESET,
    data=DATA,
    vocabulary=VOCABULARY,
    output_dir=run_dir,
    steps=STEPS,
    tau=TAU,
    batch_size=BATCH_SIZE,
    inputs_length=INPUTS_LENGTH,
    optimizer="adafactor",
    learning_rate=0.01,
    schedule="rsqrt",
    warmup_steps=WARMUP_STEPS,
    mixed_precision=MIXED_PRECISION,
    steps_per_execution=STEPS_PER_EXECUTION,
    distribution="data",
    checkpoint_every=CHECKPOINT_EVERY,
    evaluate_every=EVALUATE_EVERY,
    validation_steps=VALIDATION_STEPS,
)

"""
## Training

The losses in the logs are `sc_loss`, `mlm_loss` (generator) and
`rtd_loss` (encoder as discriminator); the last two are left out of the
epochs after the switch. After a disconnection, run the notebook again:
the run finds its checkpoint in `run_dir` and resumes from it (a finished
run raises `keras_spactor.RunFinishedError`; raise `STEPS` to extend it).
"""

resume = os.path.exists(os.path.join(run_dir, "checkpoint.keras"))
run = keras_spactor.PretrainingRun(config, resume=resume)
summary = run.run()
model = run.model
print(f"Trained {summary['steps']} steps, {summary['train_flops']:.3g} FLOPs")
print("Held-out:", summary["validation"])

"""
In a Colab notebook, watch the run with TensorBoard:
"""

"""shell
tensorboard --logdir runs/guides/run/logs
"""

"""
## Save a keras-hub preset

`save_to_preset` writes a regular keras-hub T5 preset (config, weights and
tokenizer) plus two extra files that let `SpacTorT5.from_preset` resume
pre-training with the generator and heads. keras-hub ignores those. The
run wrote one in `run_dir/preset`; the fine-tuning guide reads this one.
"""

preset_dir = os.path.join(OUTPUT_DIR, "preset")
model.save_to_preset(preset_dir)
print(sorted(os.listdir(preset_dir)))

"""
## Load it with keras-hub

The pre-trained encoder-decoder is a plain `T5Backbone`, and
`T5Seq2SeqLM` puts keras-hub's preprocessor and LM head around it, ready
for fine-tuning (see the guide *Fine-tuning a SpacTor model with
keras-hub*).
"""

backbone = keras_hub.models.T5Backbone.from_preset(preset_dir)
print("Backbone parameters:", backbone.count_params())
seq2seq = keras_hub.models.T5Seq2SeqLM.from_preset(preset_dir)
seq2seq.compile(sampler="greedy")
prompt = {"encoder_text": ["The Python language"], "decoder_text": [""]}
print(seq2seq.generate(prompt, max_length=8))

"""
## Next steps

- Fine-tune the preset: `keras-spactor finetune --preset
  runs/guides/preset ...` or the fine-tuning guide.
- Compare with plain span corruption (`tau=0`): see the guide *What the
  tau curriculum buys*.
"""
