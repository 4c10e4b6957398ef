"""Throughput of `hf:` sources against the same shards read as local files.

Cuts a JSONL.gz corpus into shards (gzipped JSON lines, and parquet),
serves them from a loopback server that plays the Hugging Face Hub
(`tests/hub_server.py`), and measures documents/s and raw tokens/s per CPU
core through the full span-corruption pipeline (`span_corruption_examples`:
tokenize, concatenate, chunk, corrupt, shuffle buffers of 10,000) for:
the local `.json.gz` files, `hf:` `.json.gz` shards and `hf:` parquet
shards (each pass over the shards downloads every one of them again, as
the cache keeps two). Then prints what one TPU host must deliver for
T5-base (inputs 512, batch 128, span corruption) at 40% MFU on a v4-8
(4 chips x 275 bf16 TFLOP/s) and a v5e-8 (8 x 197), from
`keras_spactor.flops.train_step_flops`.

Usage:
```
KERAS_BACKEND=jax python tools/benchmark_hub_source.py \
    --corpus ../shared/data/corpus/docs.train.jsonl.gz
```
"""

import argparse
import gzip
import io
import json
import os
import platform
import sys
import tempfile
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import keras  # noqa: E402
import keras_hub  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_spactor.data.pretraining_dataset import span_corruption_examples  # noqa: E402
from keras_spactor.data.sources import DocumentStats  # noqa: E402
from keras_spactor.data.span_corruption import span_corruption_lengths  # noqa: E402
from keras_spactor.flops import train_step_flops  # noqa: E402
from keras_spactor.models.spactor_presets import SPACTOR_PRESETS  # noqa: E402
from tests.hub_server import HubServer  # noqa: E402
from tools.benchmark_pipeline import corpus_vocabulary  # noqa: E402

INPUTS_LENGTH = 512
BATCH_SIZE = 128
MFU = 0.4
# (name, chips per host, bf16 TFLOP/s per chip); both are one host.
SLICES = (("v4-8", 4, 275), ("v5e-8", 8, 197))


def make_shards(corpus, folder, count):
    """`count` `.json.gz` and `.parquet` shards of the corpus' documents."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with gzip.open(corpus, "rt", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    files = {}
    for i in range(count):
        part = texts[i::count]
        lines = "".join(json.dumps({"text": t}) + "\n" for t in part)
        data = gzip.compress(lines.encode("utf-8"))
        name = f"c4-train.{i:05d}-of-{count:05d}.json.gz"
        files[f"en/{name}"] = data
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
        out = io.BytesIO()
        pq.write_table(pa.table({"text": part}), out)
        files[f"sample/{i:03d}_00000.parquet"] = out.getvalue()
    return files, sum(len(t) for t in texts) / len(texts)


def pipeline_rate(source, tokenizer, cores, seconds, warmup_seconds):
    """Documents/s and raw tokens/s of the pipeline on `cores` threads."""
    stats = DocumentStats()
    sentinel_floor = tokenizer.vocabulary_size() - 100
    examples = span_corruption_examples(
        source,
        tokenizer,
        inputs_length=INPUTS_LENGTH,
        seed=0,
        shuffle_buffer=10_000,
        repeat=True,
        num_parallel_calls=cores,
        stats=stats,
    )

    def raw_tokens(example):  # neither sentinels nor the two EOS
        count = 0
        for key in ("inputs", "targets"):
            ids = example[key]
            count += tf.reduce_sum(tf.cast(ids < sentinel_floor, tf.int64))
        return count - 2

    counts = examples.map(raw_tokens, num_parallel_calls=cores).batch(256)
    options = tf.data.Options()
    options.threading.private_threadpool_size = cores
    options.threading.max_intra_op_parallelism = 1
    iterator = iter(counts.with_options(options))
    start = time.perf_counter()
    while time.perf_counter() - start < warmup_seconds:
        next(iterator)
    documents, tokens = stats.documents, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        tokens += int(tf.reduce_sum(next(iterator)))
    elapsed = time.perf_counter() - start
    return (stats.documents - documents) / elapsed, tokens / elapsed


def required_tokens_per_second(chips, tflops):
    """Raw tokens/s one host feeds T5-base span corruption at `MFU`."""
    config = SPACTOR_PRESETS["spactor_t5_base"]["backbone"]
    backbone = types.SimpleNamespace(
        use_gated_activation=True, vocabulary_size=32_128, **config
    )
    tokens_length, targets_length = span_corruption_lengths(INPUTS_LENGTH)
    step_flops = train_step_flops(
        types.SimpleNamespace(backbone=backbone),
        BATCH_SIZE,
        INPUTS_LENGTH,
        targets_length,
        hybrid=False,
    )
    steps_per_second = chips * tflops * 1e12 * MFU / step_flops
    return steps_per_second * BATCH_SIZE * tokens_length, step_flops


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus",
        default=os.path.join(
            ROOT, "..", "shared", "data", "corpus", "docs.train.jsonl.gz"
        ),
    )
    parser.add_argument("--vocabulary", help="SentencePiece .model file.")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup_seconds", type=float, default=10.0)
    parser.add_argument("--cores", type=int, nargs="+", default=[1])
    args = parser.parse_args(argv)

    if args.vocabulary:
        tokenizer = keras_hub.models.T5Tokenizer(proto=args.vocabulary)
    else:
        tokenizer = corpus_vocabulary(args.corpus, 8000, 4000)
    work = tempfile.mkdtemp(prefix="benchmark-hub-")
    files, mean_chars = make_shards(args.corpus, work, args.shards)
    os.environ["KERAS_SPACTOR_HUB_CACHE"] = os.path.join(work, "cache")
    rows = []
    with HubServer({"bench/c4": files}) as hub:
        os.environ["HF_ENDPOINT"] = hub.endpoint
        sources = (
            ("local files, .json.gz", os.path.join(work, "*.json.gz")),
            ("hf: served locally, .json.gz", "hf:bench/c4/en/*.json.gz"),
            ("hf: served locally, parquet", "hf:bench/c4/sample/*.parquet"),
        )
        for cores in args.cores:
            for name, source in sources:
                docs, tokens = pipeline_rate(
                    source, tokenizer, cores, args.seconds, args.warmup_seconds
                )
                rows.append((name, cores, docs, tokens))
                print(
                    f"{name}, {cores} core(s): {docs:,.0f} documents/s, "
                    f"{tokens:,.0f} tokens/s",
                    flush=True,
                )
        downloads = sum(hub.downloads.values())

    print()
    print(
        f"Machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU cores; backend {keras.backend.backend()}; "
        f"vocabulary {tokenizer.vocabulary_size()} pieces; {args.shards} "
        f"shards; documents of {mean_chars:,.0f} characters on average; inputs "
        f"{INPUTS_LENGTH}; {downloads} shard downloads in all."
    )
    print()
    print("| source | cores | documents/s per core | tokens/s per core |")
    print("|---|---:|---:|---:|")
    for name, cores, docs, tokens in rows:
        print(
            f"| {name} | {cores} | {docs / cores:,.0f} | "
            f"{tokens / cores:,.0f} |"
        )
    print()
    best = max(tokens / cores for _, cores, _, tokens in rows)
    for name, chips, tflops in SLICES:
        needed, step_flops = required_tokens_per_second(chips, tflops)
        print(
            f"{name} (one host, {chips} x {tflops} TFLOP/s, {MFU:.0%} MFU, "
            f"{step_flops:.3g} FLOPs per step): {needed:,.0f} raw tokens/s "
            f"per host = {needed / best:,.1f} cores at the best rate above."
        )


if __name__ == "__main__":
    main()
