"""Throughput of the span-corruption input pipeline vs a tiny T5's appetite.

Measures the examples/s of `keras_spactor.data.pretraining_dataset` on a
JSONL corpus at inputs_length 512 and 128 with 1 and 2 CPU cores (tf.data's
private thread pool and `num_parallel_calls`), and the examples/s a 4+4-layer
d=256 `keras_hub.models.T5Backbone` + tied LM head trains at with plain
`model.fit` (batch 32, inputs_length 128, synthetic batches). Prints a
Markdown table and the pipeline/model ratios (target: >= 20x per core).

Usage:
```
KERAS_BACKEND=jax python tools/benchmark_pipeline.py \
    --corpus ../shared/data/corpus
```
"""

import argparse
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import keras  # noqa: E402
import keras_hub  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_spactor.data.pretraining_dataset import pretraining_dataset  # noqa: E402
from keras_spactor.data.span_corruption import span_corruption_lengths  # noqa: E402
from keras_spactor.data.vocabulary import default_cache_dir  # noqa: E402
from keras_spactor.data.vocabulary import train_vocabulary  # noqa: E402

BATCH_SIZE = 32


def corpus_vocabulary(corpus, vocabulary_size, max_documents):
    """Trains (once, cached) a vocabulary on the corpus' train split."""
    name = f"bench_{vocabulary_size}_{max_documents}"
    prefix = os.path.join(default_cache_dir(), name)
    if not os.path.exists(prefix + ".model"):
        print(f"Training a {vocabulary_size}-piece vocabulary ...")
        train_vocabulary(
            os.path.join(corpus, "*train*.jsonl*")
            if os.path.isdir(corpus)
            else corpus,
            prefix,
            vocabulary_size=vocabulary_size,
            max_documents=max_documents,
        )
    return keras_hub.models.T5Tokenizer(proto=prefix + ".model")


def pipeline_rate(corpus, tokenizer, inputs_length, cores, seconds, warmup):
    ds = pretraining_dataset(
        corpus,
        tokenizer,
        batch_size=BATCH_SIZE,
        inputs_length=inputs_length,
        num_parallel_calls=cores,
    )
    options = tf.data.Options()
    options.threading.private_threadpool_size = cores
    options.threading.max_intra_op_parallelism = 1
    iterator = iter(ds.with_options(options))
    for _ in range(warmup):
        next(iterator)
    batches, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(iterator)
        batches += 1
    return batches * BATCH_SIZE / (time.perf_counter() - start)


def model_rate(vocabulary_size, steps, warmup_steps):
    inputs_length = 128
    _, targets_length = span_corruption_lengths(inputs_length)
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=vocabulary_size,
        num_layers=4,
        num_heads=4,
        hidden_dim=256,
        intermediate_dim=1024,
        dropout=0.0,
    )
    names = (
        "encoder_token_ids",
        "encoder_padding_mask",
        "decoder_token_ids",
        "decoder_padding_mask",
    )
    lengths = {"encoder": inputs_length, "decoder": targets_length}
    inputs = {
        name: keras.Input(
            shape=(lengths[name.split("_")[0]],),
            dtype="bool" if name.endswith("mask") else "int32",
            name=name,
        )
        for name in names
    }
    outputs = backbone(inputs)["decoder_sequence_output"]
    logits = backbone.token_embedding(outputs, reverse=True)
    model = keras.Model(inputs, logits)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    enc = tf.random.uniform(
        [BATCH_SIZE, inputs_length], 3, vocabulary_size, tf.int32, seed=1
    )
    dec = tf.random.uniform(
        [BATCH_SIZE, targets_length], 3, vocabulary_size, tf.int32, seed=2
    )
    x = {
        "encoder_token_ids": enc,
        "encoder_padding_mask": tf.ones_like(enc, tf.bool),
        "decoder_token_ids": dec,
        "decoder_padding_mask": tf.ones_like(dec, tf.bool),
    }
    batch = (x, dec, tf.ones_like(dec, tf.float32))
    ds = tf.data.Dataset.from_tensors(batch).repeat()
    model.fit(ds, steps_per_epoch=warmup_steps, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * BATCH_SIZE / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus",
        default=os.path.join(ROOT, "..", "shared", "data", "corpus"),
        help="Directory (its train split), file or glob of JSONL(.gz).",
    )
    parser.add_argument("--vocabulary", help="SentencePiece .model file.")
    parser.add_argument("--vocabulary_size", type=int, default=8000)
    parser.add_argument("--vocabulary_documents", type=int, default=4000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup_batches", type=int, default=20)
    parser.add_argument("--model_steps", type=int, default=30)
    args = parser.parse_args(argv)

    corpus = os.path.normpath(args.corpus)
    if args.vocabulary:
        tokenizer = keras_hub.models.T5Tokenizer(proto=args.vocabulary)
    else:
        tokenizer = corpus_vocabulary(
            corpus, args.vocabulary_size, args.vocabulary_documents
        )
    rows = []
    for inputs_length in (512, 128):
        for cores in (1, 2):
            rate = pipeline_rate(
                corpus,
                tokenizer,
                inputs_length,
                cores,
                args.seconds,
                args.warmup_batches,
            )
            rows.append((inputs_length, cores, rate))
            print(
                f"pipeline inputs_length={inputs_length} cores={cores}: "
                f"{rate:,.0f} examples/s",
                flush=True,
            )
    model = model_rate(tokenizer.vocabulary_size(), args.model_steps, 3)
    print(f"model: {model:,.1f} examples/s", flush=True)

    print()
    print(
        f"Machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU cores; backend {keras.backend.backend()}; "
        f"vocabulary {tokenizer.vocabulary_size()} pieces; batch "
        f"{BATCH_SIZE}."
    )
    print()
    print("| inputs_length | cores | pipeline examples/s | ratio to model |")
    print("|---:|---:|---:|---:|")
    for inputs_length, cores, rate in rows:
        print(
            f"| {inputs_length} | {cores} | {rate:,.0f} | "
            f"{rate / model:,.1f}x |"
        )
    print()
    print(
        f"Tiny T5 (4+4 layers, d=256, inputs_length 128, batch "
        f"{BATCH_SIZE}, `fit`): {model:,.1f} examples/s."
    )


if __name__ == "__main__":
    main()
