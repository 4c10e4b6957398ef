"""The paper's claim at small scale: does pre-training help, and SpacTor vs SC.

For each seed: a randomly initialised model (the baseline every pre-trained
arm must beat), span corruption (tau=0) and SpacTor (each requested tau),
pre-trained for N steps with presets kept at N/2 and N. Every preset is
fine-tuned on SST-2 and TREC with the `finetune` command's code and scored
by rank classification, and probed (a logistic regression on the frozen
encoder's mean-pooled outputs, `keras_spactor.linear_probe`). The report
(Markdown + JSON + PNG) has mean and std over seeds, paired differences
per seed (pre-trained - random init, SpacTor - SC) with their standard
errors, validation SC loss on the held-out corpus split, whether
fine-tuning fit the training examples, and accuracy against steps and
against training FLOPs. The paper's claim (Ye et al., 2024): SpacTor at
N/2 steps matches SC at N steps.

    KERAS_BACKEND=jax python tools/reproduce_paper.py   # --setting cpu90
    KERAS_BACKEND=jax python tools/reproduce_paper.py --setting quick

Settings: `cpu90` (the default) runs whole in at most 90 minutes on 2 CPU
cores: `spactor_t5_nano` pre-trained with T5's Adafactor for 3,000 steps
on the tasks' own training sentences (`--task-text`, labels dropped:
task-adaptive pre-training, where the decoder learns to read its encoder
within the budget), every preset fine-tuned whole on all labels of each
task; `cpu90_general` is the same model for 1,500 steps on the general
corpora, fine-tuned on 2,000 labels whole and as its encoder under a
fresh decoder (pre-training did not measurably help there); `cpu90_mini`
is the earlier, wider 400-step AdamW setting; `h100_small` the T5 v1.1
small shape for one GPU (tools/gpu_reproduce.sh); `quick` is a smoke run
of minutes. Any setting value can be overridden by its flag. Results go
to --output-dir (default runs/reproduce): results.json, results.md,
accuracy.png.
"""

import argparse
import json
import os
import statistics
import sys
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared", "data")
sys.path.insert(0, ROOT)

# Everyday English (WordNet glosses) next to the documentation corpus.
BOTH_CORPORA = [
    os.path.join(SHARED, "corpus-general"),
    os.path.join(SHARED, "corpus"),
]
# `finetune`'s ways of fine-tuning a preset: whole, or the encoder under a
# fresh decoder (keras_spactor.finetune.DECODERS, not imported here so that
# the tool starts without Keras).
DECODERS = ("pretrained", "fresh")

SETTINGS = {
    # A model small enough to train 1,500 steps per arm and seed on 2 CPU
    # cores, with T5's optimiser (Adafactor, relative steps: each update
    # scaled by the weight's RMS, so the N(0, 1) token embeddings learn as
    # fast as the rest: after 1,500 steps they had moved 0.59 of their
    # norm, against 0.14 under AdamW 3e-3, which moved every kernel more
    # than them), fine-tuned both ways (whole model, and the encoder under
    # a fresh decoder). The default until task-adaptive pre-training.
    "cpu90_general": {
        "preset": "spactor_t5_nano",
        "corpus": BOTH_CORPORA,
        "steps": 1500,
        "tau": [375],
        "seeds": [0, 1, 2],
        "batch_size": 64,
        "inputs_length": 64,
        "optimizer": "adafactor",
        "learning_rate": 1e-2,
        "vocabulary_size": 2000,
        "validation_batches": 20,
        "finetune_examples": 2000,
        "finetune_steps": 600,
        "finetune_learning_rate": 1e-3,
        "decoders": list(DECODERS),
        "evaluation_examples": None,
    },
    # The default before `cpu90_general` (BENCHMARKS.md's first table): a
    # wider model for 400 steps with AdamW, fine-tuned whole.
    "cpu90_mini": {
        "preset": "spactor_t5_mini",
        "corpus": BOTH_CORPORA,
        "steps": 400,
        "tau": [100],
        "seeds": [0, 1, 2],
        "batch_size": 32,
        "inputs_length": 64,
        "learning_rate": 1e-3,
        "vocabulary_size": 4000,
        "validation_batches": 20,
        "finetune_examples": 2000,
        "finetune_steps": 300,
        "evaluation_examples": None,
    },
    # T5 v1.1 small shape, bf16, one GPU (tools/gpu_reproduce.sh). Sized
    # to about 9 minutes from one measurement: on an H200 (JAX, fed from
    # --batches) SC trained at 0.13 s/step, so 2 x 2,000 steps left no
    # time for fine-tuning within 9 minutes; 2 x 1,000 steps take ~5.
    "h100_small": {
        "preset": "spactor_t5_small",
        "corpus": BOTH_CORPORA,
        "steps": 1000,
        "tau": [250],
        "seeds": [0],
        "batch_size": 64,
        "inputs_length": 128,
        "learning_rate": 1e-3,
        "vocabulary_size": 8000,
        "validation_batches": 20,
        "finetune_examples": 10000,
        "finetune_steps": 300,
        "evaluation_examples": None,
        "mixed_precision": True,
    },
    "quick": {
        "preset": "spactor_t5_mini",
        "corpus": [os.path.join(SHARED, "corpus-general")],
        "steps": 8,
        "tau": [2],
        "seeds": [0],
        "batch_size": 4,
        "inputs_length": 64,
        "learning_rate": 1e-3,
        "vocabulary_size": 2000,
        "validation_batches": 2,
        "finetune_examples": 64,
        "finetune_steps": 4,
        "decoders": list(DECODERS),
        "evaluation_examples": 32,
    },
}
# The default, task-adaptive pre-training: the tasks' own training sentences
# (~180k words) instead of the general corpora, where the decoder
# starts reading its encoder within the budget (encoder use 0.10 nats
# at 1,500 steps, 1.04 at 3,000; on the general corpora it stayed
# below 0.06 after 6,000), and fine-tuning on every labelled example
# for long enough to fit them (at 2,000 examples and 600 steps, no
# model got past SST-2's label prior).
SETTINGS["cpu90"] = {
    **SETTINGS["cpu90_general"],
    "corpus": [],
    "task_text": True,
    "steps": 3000,
    "tau": [750],
    "finetune_examples": None,
    "finetune_steps": 1500,
    "decoders": ["pretrained"],
}
# Every this-many-th task sentence is held out of the task-text corpus as
# its validation split.
TASK_TEXT_HOLDOUT = 20
# The SentencePiece model's file name in --export-batches' directory.
VOCABULARY = "vocabulary.model"

TASKS = {
    "sst2": ("sst2.train.tsv", "sst2.validation.tsv"),
    "trec": ("trec.train.tsv", "trec.test.tsv"),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--setting", choices=sorted(SETTINGS), default="cpu90")
    p.add_argument(
        "--corpus",
        nargs="+",
        help="Pre-training text: directories with *train* / *validation* "
        "JSONL files.",
    )
    p.add_argument("--downstream", default=os.path.join(SHARED, "downstream"))
    p.add_argument(
        "--task-text",
        action="store_const",
        const=True,
        help="Also pre-train on the downstream tasks' training sentences "
        "(labels dropped; task-adaptive pre-training).",
    )
    p.add_argument("--preset")
    p.add_argument("--steps", type=int, help="N")
    p.add_argument(
        "--tau",
        type=int,
        nargs="+",
        help="SpacTor switch steps to compare. tau=N is hybrid throughout.",
    )
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--inputs-length", type=int)
    p.add_argument("--optimizer", choices=["adamw", "adafactor"])
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--vocabulary-size", type=int)
    p.add_argument("--validation-batches", type=int)
    p.add_argument("--finetune-examples", type=int)
    p.add_argument("--finetune-steps", type=int)
    p.add_argument("--finetune-learning-rate", type=float)
    p.add_argument(
        "--decoders",
        nargs="+",
        choices=DECODERS,
        help="Fine-tune each preset whole ('pretrained') and/or its encoder "
        "under a newly drawn decoder ('fresh').",
    )
    p.add_argument("--evaluation-examples", type=int)
    p.add_argument(
        "--mixed-precision",
        action="store_const",
        const=True,
        help="bfloat16 compute (mixed_bfloat16), for accelerators.",
    )
    p.add_argument(
        "--export-batches",
        metavar="DIR",
        help="Write the vocabulary and every pre-training and validation "
        "batch the run would read to DIR (needs TensorFlow), then stop.",
    )
    p.add_argument(
        "--batches",
        metavar="DIR",
        help="Read pre-training from --export-batches' DIR instead of the "
        "corpus: the run then needs no TensorFlow (e.g. a GPU machine with "
        "JAX alone).",
    )
    p.add_argument("--output-dir", default=os.path.join("runs", "reproduce"))
    p.add_argument(
        "--probe-only",
        action="store_true",
        help="Add the linear-probe accuracies to the rows finished so far "
        "(from their saved presets), then write the report.",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="Write the report from the rows finished so far (rows.jsonl).",
    )
    args = p.parse_args(argv)
    setting = dict(SETTINGS[args.setting])
    setting.setdefault("mixed_precision", False)
    setting.setdefault("task_text", False)
    setting.setdefault("optimizer", "adamw")
    setting.setdefault("finetune_learning_rate", 3e-4)
    setting.setdefault("decoders", ["pretrained"])
    for key, value in setting.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def write_task_text(downstream, directory):
    """The tasks' training sentences, labels dropped, as a JSONL corpus.

    Task-adaptive pre-training (Gururangan et al., 2020): the unlabelled
    text of the fine-tuning sets, never their evaluation files. One
    sentence per document, the tasks' sentences shuffled together (the
    vocabulary is trained on the first documents); every
    `TASK_TEXT_HOLDOUT`-th sentence of each task goes to the validation
    split instead.

    Returns:
        `directory`, holding `task_text.train.jsonl.gz` and
        `task_text.validation.jsonl.gz`.
    """
    import gzip
    import random

    from keras_spactor.finetune import read_labelled_tsv

    splits = {"train": [], "validation": []}
    for train, _ in TASKS.values():
        _, texts = read_labelled_tsv(os.path.join(downstream, train))
        for i, text in enumerate(texts, start=1):
            held_out = i % TASK_TEXT_HOLDOUT == 0
            splits["validation" if held_out else "train"].append(text)
    os.makedirs(directory, exist_ok=True)
    for split, texts in splits.items():
        random.Random(0).shuffle(texts)
        path = os.path.join(directory, f"task_text.{split}.jsonl.gz")
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.writelines(json.dumps({"text": t}) + "\n" for t in texts)
    return directory


def corpus_vocabulary(args):
    """A SentencePiece model trained (once, cached) on the corpus."""
    from keras_spactor.data.sources import iter_documents
    from keras_spactor.data.vocabulary import default_cache_dir
    from keras_spactor.data.vocabulary import train_vocabulary

    names = "_".join(os.path.basename(os.path.normpath(c)) for c in args.corpus)
    # The files' names and sizes in the key: a corpus of the same name with
    # other text (e.g. task text from another --downstream) gets its own.
    listing = sorted(
        f"{name}:{os.path.getsize(os.path.join(c, name))}"
        for c in args.corpus
        for name in os.listdir(c)
    )
    key = zlib.crc32("\n".join(listing).encode())
    prefix = os.path.join(
        default_cache_dir(),
        f"reproduce_{names}_{args.vocabulary_size}_{key:08x}",
    )
    if not os.path.exists(prefix + ".model"):
        # The same number of documents from each corpus, at most 4,000.
        per_corpus = 4000 // len(args.corpus)
        documents = []
        for corpus in args.corpus:
            for i, text in enumerate(iter_documents(corpus, "train")):
                if i >= per_corpus:
                    break
                documents.append(text)
        train_vocabulary(
            documents, prefix, vocabulary_size=args.vocabulary_size
        )
    return prefix + ".model"


def _pretraining_batches(tokenizer, args, seed):
    from keras_spactor.data import pretraining_dataset

    return pretraining_dataset(
        args.corpus,
        tokenizer,
        batch_size=args.batch_size,
        inputs_length=args.inputs_length,
        seed=seed,
    )


def _validation_batches(tokenizer, args):
    from keras_spactor.data import pretraining_dataset

    return pretraining_dataset(
        args.corpus,
        tokenizer,
        batch_size=args.batch_size,
        inputs_length=args.inputs_length,
        split="validation",
        seed=1234,
        shuffle_buffer=None,
        repeat=False,
    ).take(args.validation_batches)


def _load_batches(args, name):
    import numpy as np

    with np.load(os.path.join(args.batches, name)) as arrays:
        return arrays["inputs"], arrays["targets"]


def export_batches(args):
    """Everything the run reads from the corpus, as numpy arrays."""
    import shutil

    import keras_hub
    import numpy as np

    os.makedirs(args.export_batches, exist_ok=True)
    vocabulary = corpus_vocabulary(args)
    shutil.copy(vocabulary, os.path.join(args.export_batches, VOCABULARY))
    tokenizer = keras_hub.models.T5Tokenizer(proto=vocabulary)
    streams = {"validation.npz": _validation_batches(tokenizer, args)}
    for seed in args.seeds:
        streams[f"pretrain_seed{seed}.npz"] = _pretraining_batches(
            tokenizer, args, seed
        ).take(args.steps)
    ids = "int16" if args.vocabulary_size <= 2**15 else "int32"
    for name, dataset in streams.items():
        inputs, targets = _stream_arrays(dataset)
        np.savez_compressed(
            os.path.join(args.export_batches, name),
            inputs=inputs.astype(ids),
            targets=targets.astype(ids),
        )
        print(f"wrote {name}: {len(inputs)} examples", flush=True)


def _stream_arrays(dataset):
    """A finite pipeline's encoder ids and targets, concatenated."""
    import numpy as np

    inputs, targets = [], []
    for x, y, _ in dataset.as_numpy_iterator():
        inputs.append(x["encoder_token_ids"])
        targets.append(y)
    return np.concatenate(inputs), np.concatenate(targets)


def validation_metrics(model, tokenizer, args):
    """SC loss on held-out text, how much of it the encoder explains, and
    how alike the encoder's outputs are.

    `encoder_use` is the held-out SC loss with every example's encoder
    inputs swapped for another example's, minus the real loss: 0 when the
    decoder predicts the spans from its own prefix alone (a language model
    of the targets that ignores the encoder), growing as the decoder reads
    the context around each sentinel.

    `encoder_token_cosine` is the mean cosine between each token's encoder
    output and the mean output over the batch: near 0 when tokens keep
    their identity, near 1 when the encoder maps everything to one
    direction (a collapsed encoder that fine-tuning must first undo).
    """
    import numpy as np
    from keras import ops

    from keras_spactor.data import model_batch_arrays

    if args.batches:
        inputs, targets = _load_batches(args, "validation.npz")
    else:
        inputs, targets = _stream_arrays(_validation_batches(tokenizer, args))
    size = args.batch_size
    x, y, weights = model_batch_arrays(inputs, targets)

    def sc_loss(x):
        return model.evaluate(
            x,
            y,
            sample_weight=weights,
            batch_size=size,
            verbose=0,
            return_dict=True,
        )["sc_loss"]

    loss = sc_loss(x)
    # Each example's targets with the next example's encoder inputs.
    rolled = dict(x)
    for key in ("encoder_token_ids", "encoder_padding_mask"):
        rolled[key] = np.roll(x[key], 1, axis=0)
    rolled_loss = sc_loss(rolled)
    first = {k: ops.convert_to_tensor(v[:size]) for k, v in x.items()}
    outputs = model.backbone(first)
    hidden = ops.convert_to_numpy(outputs["encoder_sequence_output"])
    tokens = hidden[x["encoder_padding_mask"][:size]]
    tokens = tokens.astype("float64")
    mean = tokens.mean(axis=0)
    cosines = (
        tokens
        @ mean
        / (np.linalg.norm(tokens, axis=1) * np.linalg.norm(mean) + 1e-12)
    )
    return {
        "validation_sc_loss": loss,
        "encoder_use": rolled_loss - loss,
        "encoder_token_cosine": float(cosines.mean()),
    }


def _new_model(args, vocabulary, seed, tau):
    import keras
    import keras_hub

    import keras_spactor

    keras.utils.set_random_seed(seed)
    tokenizer = keras_hub.models.T5Tokenizer(proto=vocabulary)
    model = keras_spactor.SpacTorT5.from_preset(
        args.preset, tokenizer=tokenizer, seed=seed, tau=tau
    )
    return model, tokenizer


def random_init(seed, vocabulary, args, out):
    """The untrained model of this seed, saved as a preset."""
    model, tokenizer = _new_model(args, vocabulary, seed, tau=0)
    model.compile(optimizer="adamw")
    preset = os.path.join(out, f"random_seed{seed}")
    model.save_to_preset(preset)
    return {
        "objective": "random",
        "tau": None,
        "seed": seed,
        "steps": 0,
        "train_flops": 0,
        "train_seconds": 0.0,
        "preset": preset,
        **validation_metrics(model, tokenizer, args),
    }


def pretrain(name, tau, seed, vocabulary, args, out, keep):
    """Train N steps; save presets at N/2 and N; `keep` each checkpoint's
    row."""
    import keras

    import keras_spactor
    from keras_spactor.data import model_batch_arrays

    model, tokenizer = _new_model(args, vocabulary, seed, tau)
    if args.optimizer == "adafactor":
        # T5's recipe: a constant rate with Adafactor's relative steps.
        optimizer = keras.optimizers.Adafactor(args.learning_rate)
    else:
        # Warmup over a tenth of the run, then cosine decay to a tenth:
        # the same schedule for every arm. (Without warmup, 2e-3 from the
        # first step collapses the encoder's outputs onto one direction
        # faster.)
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0,
            args.steps,
            alpha=0.1,
            warmup_target=args.learning_rate,
            warmup_steps=max(1, args.steps // 10),
        )
        optimizer = keras.optimizers.AdamW(schedule)
    model.compile(optimizer=optimizer)
    if args.batches:
        arrays = model_batch_arrays(
            *_load_batches(args, f"pretrain_seed{seed}.npz")
        )
        targets_length = arrays[1].shape[1]
    else:
        from keras_spactor.data import span_corruption_lengths

        dataset = _pretraining_batches(tokenizer, args, seed)
        targets_length = span_corruption_lengths(args.inputs_length)[1]
    progress = keras_spactor.callbacks.TrainingProgress.for_model(
        model, args.batch_size, args.inputs_length, targets_length
    )
    for checkpoint in (args.steps // 2, args.steps):
        start = time.time()
        if args.batches:
            rows_done = slice(
                progress.step * args.batch_size, checkpoint * args.batch_size
            )
            x, y, weights = (
                {k: v[rows_done] for k, v in arrays[0].items()},
                arrays[1][rows_done],
                arrays[2][rows_done],
            )
            model.fit(
                x,
                y,
                sample_weight=weights,
                batch_size=args.batch_size,
                epochs=1,
                shuffle=False,
                verbose=0,
                callbacks=[progress],
            )
        else:
            model.fit(
                # The stream is deterministic: skip what was consumed.
                dataset.skip(progress.step),
                steps_per_epoch=checkpoint - progress.step,
                epochs=1,
                verbose=0,
                callbacks=[progress],
            )
        preset = os.path.join(out, f"{name}_seed{seed}_step{checkpoint}")
        model.save_to_preset(preset)
        row = {
            "objective": name,
            "tau": tau,
            "seed": seed,
            "steps": checkpoint,
            "train_flops": progress.train_flops,
            "train_seconds": round(time.time() - start, 1),
            "preset": preset,
            **validation_metrics(model, tokenizer, args),
        }
        print(json.dumps(row), flush=True)
        keep(row)


def _accuracy_key(task, decoder):
    """The row key of a task's accuracy for one way of fine-tuning."""
    if decoder == "pretrained":
        return f"{task}_accuracy"
    return f"{task}_{decoder}_decoder_accuracy"


def _train_accuracy_key(task, decoder):
    """The row key of the fine-tuned model's accuracy on its own training
    examples (did fine-tuning fit the task?)."""
    return _accuracy_key(task, decoder).replace("_accuracy", "_train_accuracy")


def _probe_key(task):
    """The row key of a task's frozen-encoder linear-probe accuracy."""
    return f"{task}_probe_accuracy"


def probe(row, args):
    """Add each task's linear-probe accuracy (frozen encoder, the same
    labelled examples as fine-tuning) to the row."""
    from keras_spactor.linear_probe import linear_probe

    for task, (train, evaluation) in TASKS.items():
        metrics = linear_probe(
            row["preset"],
            os.path.join(args.downstream, train),
            os.path.join(args.downstream, evaluation),
            max_train_examples=args.finetune_examples,
            max_evaluation_examples=args.evaluation_examples,
        )
        row[_probe_key(task)] = metrics["accuracy"]
        row[f"{task}_majority"] = metrics["majority_accuracy"]


def downstream(row, args, out):
    """Probe and fine-tune the row's preset on every task, each way in
    `args.decoders`; add the accuracies to it."""
    from keras_spactor.finetune import finetune

    probe(row, args)
    for decoder in args.decoders:
        for task, (train, evaluation) in TASKS.items():
            name = f"{os.path.basename(row['preset'])}_{task}_{decoder}"
            metrics = finetune(
                row["preset"],
                os.path.join(args.downstream, train),
                os.path.join(args.downstream, evaluation),
                os.path.join(out, "finetune", name),
                steps=args.finetune_steps,
                learning_rate=args.finetune_learning_rate,
                decoder=decoder,
                max_train_examples=args.finetune_examples,
                max_validation_examples=args.evaluation_examples,
                seed=row["seed"],
                save_preset=False,
            )
            row[_accuracy_key(task, decoder)] = metrics["accuracy"]
            row[_train_accuracy_key(task, decoder)] = metrics["train_accuracy"]
            row[f"{task}_majority"] = metrics["majority_accuracy"]
            row[f"{task}_examples"] = metrics["evaluation_examples"]
    print(json.dumps(row), flush=True)


TRAINING_METRICS = ["validation_sc_loss", "encoder_use", "encoder_token_cosine"]
TASK_NAMES = {"sst2": "SST-2", "trec": "TREC"}
# Each accuracy a row can hold -> its task.
METRIC_TASKS = {_accuracy_key(t, d): t for d in DECODERS for t in TASKS}
METRIC_TASKS.update({_probe_key(t): t for t in TASKS})
# Every metric a row can hold, in report order, and its column name.
FIT_METRICS = [_train_accuracy_key(t, d) for d in DECODERS for t in TASKS]
METRICS = TRAINING_METRICS + list(METRIC_TASKS) + FIT_METRICS
METRIC_NAMES = {
    "validation_sc_loss": "val SC loss",
    "encoder_use": "encoder use",
    "encoder_token_cosine": "encoder cosine",
    **{
        _accuracy_key(t, d): f"{TASK_NAMES[t]} acc"
        + (" (fresh decoder)" if d == "fresh" else "")
        for d in DECODERS
        for t in TASKS
    },
    **{_probe_key(t): f"{TASK_NAMES[t]} probe" for t in TASKS},
    **{
        _train_accuracy_key(t, d): f"{TASK_NAMES[t]} train acc"
        + (" (fresh decoder)" if d == "fresh" else "")
        for d in DECODERS
        for t in TASKS
    },
}


def metrics_in(records):
    """The metrics (in report order) that any of `records` holds."""
    return [m for m in METRICS if any(m in r for r in records)]


def _arm(row):
    if row["objective"] == "spactor":
        return f"spactor tau={row['tau']}"
    return row["objective"]


def _mean_std(values):
    if not values:
        return None, None
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.mean(values), spread


def summarize(rows):
    """Mean and std over seeds, per (arm, steps)."""
    groups = {}
    for row in rows:
        groups.setdefault((_arm(row), row["steps"]), []).append(row)
    table = []
    for (arm, steps), group in groups.items():
        entry = {
            "arm": arm,
            "steps": steps,
            "seeds": len(group),
            "train_flops": group[0]["train_flops"],
        }
        for metric in metrics_in(rows):
            values = [r[metric] for r in group if r.get(metric) is not None]
            entry[metric], entry[metric + "_std"] = _mean_std(values)
            entry[metric + "_n"] = len(values)
        table.append(entry)
    return sorted(
        table, key=lambda e: (e["arm"] != "random", e["arm"], e["steps"])
    )


def paired_differences(rows, comparisons):
    """Per-seed differences `a - b` for each `(a, b)` of (arm, steps) keys.

    Returns entries with the mean difference, its standard error over seeds
    (std / sqrt(seeds)) and `z` = mean / SE, per metric.
    """
    by_key = {(_arm(r), r["steps"], r["seed"]): r for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    results = []
    for a, b in comparisons:
        entry = {"a": list(a), "b": list(b)}
        for metric in metrics_in(rows):
            differences = [
                by_key[a + (s,)][metric] - by_key[b + (s,)][metric]
                for s in seeds
                if a + (s,) in by_key
                and b + (s,) in by_key
                and by_key[a + (s,)].get(metric) is not None
                and by_key[b + (s,)].get(metric) is not None
            ]
            mean, spread = _mean_std(differences)
            error = spread / len(differences) ** 0.5 if differences else None
            entry[metric] = {
                "differences": differences,
                "mean": mean,
                "standard_error": error,
                "z": mean / error if error else None,
            }
        results.append(entry)
    return results


def comparisons(args):
    half, full = args.steps // 2, args.steps
    pairs = [(("sc", s), ("random", 0)) for s in (half, full)]
    for tau in args.tau:
        arm = f"spactor tau={tau}"
        pairs += [((arm, s), ("random", 0)) for s in (half, full)]
        pairs += [((arm, s), ("sc", s)) for s in (half, full)]
        pairs.append(((arm, half), ("sc", full)))
    return pairs


def _cell(entry, metric, digits=3):
    if entry.get(metric) is None:
        return "n/a"
    text = f"{entry[metric]:.{digits}f} ± {entry[metric + '_std']:.{digits}f}"
    if entry.get(metric + "_n", entry["seeds"]) < entry["seeds"]:
        text += f" (n={entry[metric + '_n']})"  # a run cut short
    return text


def markdown(table, differences, majority):
    metrics = metrics_in(table)
    names = [METRIC_NAMES[m] for m in metrics]
    lines = [
        "| arm | steps | train TFLOPs | " + " | ".join(names) + " | seeds |",
        "|---|---:|---:|" + "---:|" * len(metrics) + "---:|",
    ]
    for e in table:
        lines.append(
            f"| {e['arm']} | {e['steps']} | {e['train_flops'] / 1e12:.2f} | "
            + " | ".join(_cell(e, m) for m in metrics)
            + f" | {e['seeds']} |"
        )
    lines.append(
        "| majority class | | | "
        + " | ".join(
            f"{majority[METRIC_TASKS[m]]:.3f}"
            if METRIC_TASKS.get(m) in majority
            else ""
            for m in metrics
        )
        + " | |"
    )
    # Whether fine-tuning fit is a check on each run, not a comparison.
    metrics = [m for m in metrics if m not in FIT_METRICS]
    names = [METRIC_NAMES[m] for m in metrics]
    lines += [
        "",
        "Paired differences over seeds (a - b: mean ± standard error, z):",
        "",
        "| a | b | " + " | ".join(names) + " |",
        "|---|---|" + "---:|" * len(metrics),
    ]
    for d in differences:

        def cell(metric):
            m = d.get(metric)
            if m is None or m["mean"] is None:
                return "n/a"
            z = f", z={m['z']:.1f}" if m["z"] is not None else ""
            return f"{m['mean']:+.3f} ± {m['standard_error']:.3f}{z}"

        lines.append(
            f"| {d['a'][0]} @ {d['a'][1]} | {d['b'][0]} @ {d['b'][1]} | "
            + " | ".join(cell(m) for m in metrics)
            + " |"
        )
    return "\n".join(lines)


def plot(table, majority, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = metrics_in(table)
    figure, axes = plt.subplots(
        2, len(metrics), figsize=(3.6 * len(metrics), 7), squeeze=False
    )
    random = next((e for e in table if e["arm"] == "random"), None)
    series = {}
    for e in table:
        if e["arm"] != "random":
            series.setdefault(e["arm"], []).append(e)
    for column, metric in enumerate(metrics):
        for row, x_key in enumerate(("steps", "train_flops")):
            ax = axes[row][column]
            for arm, entries in series.items():
                entries = [e for e in entries if e[metric] is not None]
                ax.errorbar(
                    [e[x_key] for e in entries],
                    [e[metric] for e in entries],
                    yerr=[e[metric + "_std"] for e in entries],
                    marker="o",
                    label=arm,
                )
            if random is not None and random.get(metric) is not None:
                ax.axhline(random[metric], color="gray", label="random init")
            task = METRIC_TASKS.get(metric)
            if task in majority:
                ax.axhline(
                    majority[task], color="gray", ls=":", label="majority"
                )
            ax.set_xlabel("steps" if x_key == "steps" else "training FLOPs")
            ax.set_ylabel(METRIC_NAMES[metric])
    axes[0][0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def _finetune_order(rows):
    """Baselines and the final checkpoints first, every seed before the next
    arm: a run cut short still answers the main questions on all seeds."""

    last = max(r["steps"] for r in rows)

    def key(row):
        first = row["objective"] == "random" or row["steps"] == last
        # Then SpacTor at N/2 (the paper's claim) before SC at N/2.
        arm_rank = {"random": 0, "sc": 1 if first else 3}.get(
            row["objective"], 2
        )
        return (not first, arm_rank, row["seed"])

    return sorted(rows, key=key)


def _append(path, row):
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def _read_rows(path):
    """The latest version of each (arm, steps, seed) row in rows.jsonl."""
    rows = {}
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            rows[(_arm(row), row["steps"], row["seed"])] = row
    return list(rows.values())


def report(rows, args, minutes=None):
    finetuned = [r for r in rows if f"{next(iter(TASKS))}_majority" in r]
    majority = (
        {t: finetuned[0][f"{t}_majority"] for t in TASKS} if finetuned else {}
    )
    table = summarize(rows)
    differences = paired_differences(rows, comparisons(args))
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(
            {
                "args": vars(args),
                "rows": rows,
                "table": table,
                "paired_differences": differences,
                "majority_accuracy": majority,
                "minutes": minutes,
            },
            f,
            indent=2,
        )
    text = markdown(table, differences, majority)
    if minutes:
        text += f"\n\nWall time: {minutes['all']:.1f} min "
        text += f"({minutes['pretraining']:.1f} pre-training)."
    with open(os.path.join(args.output_dir, "results.md"), "w") as f:
        f.write(text + "\n")
    plot(table, majority, os.path.join(args.output_dir, "accuracy.png"))
    print(text)


def main(argv=None):
    args = parse_args(argv)
    rows_path = os.path.join(args.output_dir, "rows.jsonl")
    if args.report_only:
        report(_read_rows(rows_path), args)
        return
    if args.probe_only:
        rows = _read_rows(rows_path)
        for row in rows:
            if _probe_key(next(iter(TASKS))) not in row:
                probe(row, args)
                _append(rows_path, row)
        report(rows, args)
        return
    needed = [args.batches] if args.batches else list(args.corpus)
    if not args.export_batches:
        needed.append(args.downstream)
    for path in needed:
        if not os.path.isdir(path):
            raise SystemExit(f"reproduce_paper: {path} does not exist")
    out = args.output_dir
    os.makedirs(out, exist_ok=True)
    if args.task_text and not args.batches:
        task_text = os.path.join(out, "task_text")
        args.corpus = [
            *args.corpus,
            write_task_text(args.downstream, task_text),
        ]
    if args.export_batches:
        export_batches(args)
        return
    if args.mixed_precision:
        import keras

        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    start = time.time()
    if args.batches:
        vocabulary = os.path.join(args.batches, VOCABULARY)
    else:
        vocabulary = corpus_vocabulary(args)
    rows = []

    def keep(row):
        _append(rows_path, row)
        rows.append(row)

    for seed in args.seeds:
        # Each row is kept as soon as it exists: a run cut short (a time
        # limit on a rented machine) still reports what it finished.
        keep(random_init(seed, vocabulary, args, out))
        pretrain("sc", 0, seed, vocabulary, args, out, keep)
        for tau in args.tau:
            pretrain("spactor", tau, seed, vocabulary, args, out, keep)
    pretrain_minutes = (time.time() - start) / 60
    for row in _finetune_order(rows):
        downstream(row, args, args.output_dir)
        _append(rows_path, row)
    minutes = {
        "pretraining": pretrain_minutes,
        "all": (time.time() - start) / 60,
    }
    report(rows, args, minutes)


if __name__ == "__main__":
    main()
