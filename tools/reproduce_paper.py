"""The paper's claim at small scale: does pre-training help, and SpacTor vs SC.

For each seed: a randomly initialised model (the baseline every pre-trained
arm must beat), span corruption (tau=0) and SpacTor (each requested tau),
each pre-trained by `keras_spactor.PretrainingRun` for N steps, with
presets kept at N/2 and N. Every preset is measured on held-out text
(`keras_spactor.evaluation.validation_metrics`), fine-tuned on each task
(`keras_spactor.evaluation.finetune`, scored by rank classification) and
probed (`keras_spactor.evaluation.linear_probe`). The report (Markdown +
JSON + PNG) has mean and std over seeds, paired differences per seed
(pre-trained - random init, SpacTor - SC) with their standard errors, and
accuracy against steps and against training FLOPs. The paper's claim (Ye
et al., 2024): SpacTor at N/2 steps matches SC at N steps.

    # Minutes, on what the repository ships (embedded corpus and
    # sentiment-tiny): a smoke run, not a measurement.
    KERAS_BACKEND=jax python tools/reproduce_paper.py --setting quick
    # BENCHMARKS.md's experiment (at most 90 minutes on 2 CPU cores):
    KERAS_BACKEND=jax python tools/reproduce_paper.py --downstream DIR

Settings: `cpu90` (the default): `spactor_t5_nano` pre-trained with T5's
Adafactor for 3,000 steps on the tasks' own training sentences
(task-adaptive pre-training), every preset fine-tuned on all labels of
SST-2 and TREC; `h100_small`: the T5 v1.1 small shape on one GPU
(tools/gpu_reproduce.sh); `quick`: minutes, on the package's embedded
corpus and its `sentiment-tiny` examples. Any value of a setting can be
overridden by its flag. `cpu90` and `h100_small` need SST-2 and TREC:
`--downstream DIR`, a folder with `sst2.train.tsv`, `sst2.validation.tsv`,
`trec.train.tsv` and `trec.test.tsv` (`label<TAB>text`). Results go to
--output-dir (default runs/reproduce): results.json, results.md,
accuracy.png. Earlier settings and their results: BENCHMARKS.md.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# `finetune`'s ways of fine-tuning a preset: whole, or the encoder under a
# fresh decoder (keras_spactor.evaluation.finetuning.DECODERS, not imported
# here so that the tool starts without Keras).
DECODERS = ("pretrained", "fresh")
# `--downstream builtin`: the package's shipped examples (sentiment-tiny).
BUILTIN_DOWNSTREAM = "builtin"

SETTINGS = {
    # Task-adaptive pre-training: the tasks' own training sentences (~180k
    # words), where the decoder starts reading its encoder within the
    # budget, then fine-tuning on every labelled example for long enough
    # to fit them. T5's optimiser (Adafactor, relative steps, constant
    # rate): each update scaled by the weight's RMS, so the N(0, 1) token
    # embeddings learn as fast as the rest.
    "cpu90": {
        "preset": "spactor_t5_nano",
        "corpus": [],
        "task_text": True,
        "downstream": None,
        "steps": 3000,
        "tau": [750],
        "seeds": [0, 1, 2],
        "batch_size": 64,
        "inputs_length": 64,
        "optimizer": "adafactor",
        "learning_rate": 1e-2,
        "schedule": "constant",
        "vocabulary_size": 2000,
        "validation_batches": 20,
        "finetune_examples": None,
        "finetune_steps": 1500,
        "finetune_learning_rate": 1e-3,
        "evaluation_examples": None,
    },
    # T5 v1.1 small shape, bf16, one GPU (tools/gpu_reproduce.sh). Sized
    # to about 9 minutes from one measurement: on an H200 (JAX, fed from
    # --batches) SC trained at 0.13 s/step, so 2 x 2,000 steps left no
    # time for fine-tuning within 9 minutes; 2 x 1,000 steps take ~5.
    "h100_small": {
        "preset": "spactor_t5_small",
        "corpus": [],
        "task_text": True,
        "downstream": None,
        "steps": 1000,
        "tau": [250],
        "seeds": [0],
        "batch_size": 64,
        "inputs_length": 128,
        "learning_rate": 1e-3,
        "schedule": "cosine",
        "vocabulary_size": 8000,
        "validation_batches": 20,
        "finetune_examples": 10000,
        "finetune_steps": 300,
        "evaluation_examples": None,
        "mixed_precision": True,
    },
    # A smoke run of minutes on what the repository ships.
    "quick": {
        "preset": "spactor_t5_nano",
        "corpus": ["builtin:python-docs"],
        "task_text": False,
        "downstream": BUILTIN_DOWNSTREAM,
        "steps": 8,
        "tau": [2],
        "seeds": [0],
        "batch_size": 4,
        "inputs_length": 64,
        "learning_rate": 1e-3,
        "schedule": "cosine",
        "vocabulary_size": 2000,
        "validation_batches": 2,
        "finetune_examples": 64,
        "finetune_steps": 4,
        "decoders": list(DECODERS),
        "evaluation_examples": 32,
    },
}
# Every this-many-th task sentence is held out of the task-text corpus as
# its validation split.
TASK_TEXT_HOLDOUT = 20
# The held-out batches' seed: every arm and seed is measured on the same.
VALIDATION_SEED = 1234
# The SentencePiece model's file name in --export-batches' directory.
VOCABULARY = "vocabulary.model"

# Each task's training and evaluation files in a --downstream folder, and
# its name in the report.
TASK_FILES = {
    "sst2": ("sst2.train.tsv", "sst2.validation.tsv"),
    "trec": ("trec.train.tsv", "trec.test.tsv"),
    "sentiment_tiny": (
        "sentiment_tiny.train.tsv",
        "sentiment_tiny.validation.tsv",
    ),
}
TASK_NAMES = {"sst2": "SST-2", "trec": "TREC", "sentiment_tiny": "sentiment"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--setting", choices=sorted(SETTINGS), default="cpu90")
    p.add_argument(
        "--corpus",
        nargs="+",
        help="Pre-training text: text source specs (keras_spactor.data."
        "text_dataset: builtin:python-docs, folders with *train* / "
        "*validation* JSONL files, ...).",
    )
    p.add_argument(
        "--downstream",
        help="The labelled tasks: a folder of label<TAB>text files "
        "(sst2.train.tsv, sst2.validation.tsv, trec.train.tsv, "
        "trec.test.tsv), or 'builtin' for the package's sentiment-tiny.",
    )
    p.add_argument(
        "--task-text",
        action="store_const",
        const=True,
        help="Also pre-train on the downstream tasks' training sentences "
        "(labels dropped; task-adaptive pre-training).",
    )
    p.add_argument("--preset")
    p.add_argument("--steps", type=int, help="N (even: presets at N/2, N)")
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
    p.add_argument("--schedule", choices=["constant", "rsqrt", "cosine"])
    p.add_argument(
        "--warmup-steps", type=int, help="Default: a tenth of the steps."
    )
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
        help="Write the vocabulary, every pre-training and validation "
        "batch the run would read and the task files to DIR (needs "
        "TensorFlow), then stop.",
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
    setting.setdefault("optimizer", "adamw")
    setting.setdefault("finetune_learning_rate", 3e-4)
    setting.setdefault("decoders", ["pretrained"])
    for key, value in setting.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.warmup_steps is None:
        args.warmup_steps = args.steps // 10
    return args


def task_files(downstream):
    """`{task: (train_path, evaluation_path)}` of the tasks in a
    --downstream folder (`"builtin"`: the package's shipped examples)."""
    if downstream == BUILTIN_DOWNSTREAM:
        from keras_spactor.data import examples

        downstream = os.path.dirname(os.path.abspath(examples.__file__))
    tasks = {}
    for task, files in TASK_FILES.items():
        paths = [os.path.join(downstream, name) for name in files]
        if all(os.path.isfile(path) for path in paths):
            tasks[task] = tuple(paths)
    return tasks


def check_inputs(args):
    """Exits with one line naming what is missing."""
    if args.downstream is None:
        raise SystemExit(
            f"reproduce_paper: --setting {args.setting} fine-tunes on SST-2 "
            "and TREC: pass --downstream DIR, a folder holding "
            "sst2.train.tsv, sst2.validation.tsv, trec.train.tsv and "
            "trec.test.tsv (label<TAB>text lines), or run --setting quick "
            "on what the repository ships."
        )
    if not task_files(args.downstream):
        raise SystemExit(
            f"reproduce_paper: --downstream {args.downstream} holds none of "
            + ", ".join(" and ".join(f) for f in TASK_FILES.values())
        )
    if args.steps % 2:
        raise SystemExit(
            f"reproduce_paper: --steps {args.steps} must be even (presets "
            "are kept at N/2 and N)"
        )
    if args.batches and not os.path.isdir(args.batches):
        raise SystemExit(f"reproduce_paper: {args.batches} does not exist")
    if not (args.corpus or args.task_text or args.batches):
        raise SystemExit("reproduce_paper: no pre-training text (--corpus)")


def write_task_text(tasks, directory):
    """The tasks' training sentences, labels dropped, as a JSONL corpus.

    Task-adaptive pre-training (Gururangan et al., 2020): the unlabelled
    text of the fine-tuning sets, never their evaluation files. One
    sentence per document, the tasks' sentences shuffled together (the
    vocabulary is trained on the first documents); every
    `TASK_TEXT_HOLDOUT`-th sentence of each task goes to the validation
    split instead.

    Args:
        tasks: `{task: (train_path, evaluation_path)}` (`task_files`).
        directory: str. Where to write.

    Returns:
        `directory`, holding `task_text.train.jsonl.gz` and
        `task_text.validation.jsonl.gz`.
    """
    import gzip
    import random

    from keras_spactor.labelled_data import read_labelled_tsv

    splits = {"train": [], "validation": []}
    for train, _ in tasks.values():
        _, texts = read_labelled_tsv(train)
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

    # The folders' file names and sizes in the key: a corpus of the same
    # name with other text (e.g. task text of other tasks) gets its own.
    listing = [
        f"{name}:{os.path.getsize(os.path.join(c, name))}"
        if os.path.isdir(c)
        else c
        for c in args.corpus
        for name in (sorted(os.listdir(c)) if os.path.isdir(c) else [c])
    ]
    key = zlib.crc32("\n".join(listing).encode())
    names = "_".join(
        os.path.basename(os.path.normpath(c)).replace(":", "_")
        for c in args.corpus
    )
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


def _pretraining_dataset(tokenizer, args, seed):
    """What `PretrainingRun` reads for this seed (for --export-batches)."""
    from keras_spactor.data import pretraining_dataset

    return pretraining_dataset(
        ",".join(args.corpus),
        tokenizer,
        batch_size=args.batch_size,
        inputs_length=args.inputs_length,
        seed=seed,
    )


def _validation_dataset(tokenizer, args):
    from keras_spactor.data import pretraining_dataset

    return pretraining_dataset(
        ",".join(args.corpus),
        tokenizer,
        batch_size=args.batch_size,
        inputs_length=args.inputs_length,
        split="validation",
        seed=VALIDATION_SEED,
        shuffle_buffer=None,
        repeat=False,
    ).take(args.validation_batches)


def held_out_batches(tokenizer, args):
    """The validation batches every preset is measured on."""
    if not args.batches:
        return _validation_dataset(tokenizer, args)
    from keras_spactor.data import model_batch_arrays

    x, y, weights = model_batch_arrays(*_load_batches(args, "validation.npz"))
    size = args.batch_size
    return [
        (
            {k: v[i : i + size] for k, v in x.items()},
            y[i : i + size],
            weights[i : i + size],
        )
        for i in range(0, len(y), size)
    ]


def _load_batches(args, name):
    import numpy as np

    with np.load(os.path.join(args.batches, name)) as arrays:
        return arrays["inputs"], arrays["targets"]


def export_batches(args, vocabulary, tasks):
    """Everything the run reads, as files: the vocabulary, numpy arrays of
    the batches and the task files (for a machine without TensorFlow)."""
    import keras_hub
    import numpy as np

    os.makedirs(os.path.join(args.export_batches, "downstream"), exist_ok=True)
    shutil.copy(vocabulary, os.path.join(args.export_batches, VOCABULARY))
    for paths in tasks.values():
        for path in paths:
            shutil.copy(path, os.path.join(args.export_batches, "downstream"))
    tokenizer = keras_hub.models.T5Tokenizer(proto=vocabulary)
    streams = {"validation.npz": _validation_dataset(tokenizer, args)}
    for seed in args.seeds:
        streams[f"pretrain_seed{seed}.npz"] = _pretraining_dataset(
            tokenizer, args, seed
        ).take(args.steps)
    ids = "int16" if args.vocabulary_size <= 2**15 else "int32"
    for name, dataset in streams.items():
        inputs, targets = [], []
        for x, y, _ in dataset.as_numpy_iterator():
            inputs.append(x["encoder_token_ids"])
            targets.append(y)
        np.savez_compressed(
            os.path.join(args.export_batches, name),
            inputs=np.concatenate(inputs).astype(ids),
            targets=np.concatenate(targets).astype(ids),
        )
        print(f"wrote {name}: {sum(map(len, inputs))} examples", flush=True)


def _arm_name(objective, tau):
    return "sc" if objective == "sc" else f"spactor_tau{tau}"


def _measure(model, tokenizer, args):
    from keras_spactor.evaluation import validation_metrics

    return validation_metrics(model, held_out_batches(tokenizer, args))


def random_init(seed, tokenizer, args, out):
    """The untrained model of this seed (the one each run of the seed
    starts from), saved as a preset."""
    import keras

    from keras_spactor import SpacTorT5

    keras.utils.set_random_seed(seed)
    model = SpacTorT5.from_preset(args.preset, tokenizer=tokenizer, seed=seed)
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
        **_measure(model, tokenizer, args),
    }


def pretraining_config(objective, tau, seed, vocabulary, args, out):
    """The `PretrainingConfig` of one arm and seed: checkpoints at N/2 and
    N, the package's optimizer recipe."""
    import keras_spactor

    return keras_spactor.PretrainingConfig(
        preset=args.preset,
        data=args.batches or ",".join(args.corpus),
        vocabulary=vocabulary,
        output_dir=os.path.join(
            out, "pretraining", f"{_arm_name(objective, tau)}_seed{seed}"
        ),
        steps=args.steps,
        tau=tau,
        batch_size=args.batch_size,
        inputs_length=args.inputs_length,
        seed=seed,
        optimizer=args.optimizer,
        learning_rate=args.learning_rate,
        schedule=args.schedule,
        warmup_steps=args.warmup_steps,
        mixed_precision=args.mixed_precision,
        checkpoint_every=args.steps // 2,
    )


def pretrain(objective, tau, seed, vocabulary, tokenizer, args, out, keep):
    """Pre-train one arm; save presets at N/2 and N; `keep` each one's
    row."""
    config = pretraining_config(objective, tau, seed, vocabulary, args, out)
    if args.batches:
        checkpoints = _pretrain_from_arrays(config, tokenizer, args)
    else:
        checkpoints = _pretrain_with_run(config, tokenizer)
    for steps, model, train_flops, seconds in checkpoints:
        name = f"{_arm_name(objective, tau)}_seed{seed}_step{steps}"
        preset = os.path.join(out, name)
        model.save_to_preset(preset)
        row = {
            "objective": objective,
            "tau": tau,
            "seed": seed,
            "steps": steps,
            "train_flops": train_flops,
            "train_seconds": seconds,
            "preset": preset,
            **_measure(model, tokenizer, args),
        }
        print(json.dumps(row), flush=True)
        keep(row)


def _pretrain_with_run(config, tokenizer):
    """`(steps, model, train FLOPs, seconds)` at N/2 and N, from one
    `PretrainingRun` whose checkpoints fall at N/2 and N: the one kept
    before the last is the model at N/2."""
    import keras

    import keras_spactor
    from keras_spactor.callbacks.atomic_checkpoint import previous_path

    run = keras_spactor.PretrainingRun(config)
    summary = run.run()
    half = keras.saving.load_model(previous_path(run.checkpoint_path))
    half.tokenizer = tokenizer
    steps = int(keras.ops.convert_to_numpy(half.optimizer.iterations))
    if steps != config.steps // 2:
        raise RuntimeError(f"the checkpoint before the last is at {steps}")
    yield steps, half, _flops_at(summary, steps), None
    yield (
        config.steps,
        run.model,
        summary["train_flops"],
        summary["wall_time_s"],
    )


def _flops_at(summary, steps):
    """Training FLOPs of a run's first `steps` steps, from its summary."""
    tau, flops = summary["tau"], summary["flops_per_step"]
    hybrid = steps if tau is None else min(steps, tau)
    return (
        hybrid * flops["hybrid"] + (steps - hybrid) * flops["span_corruption"]
    )


def _pretrain_from_arrays(config, tokenizer, args):
    """The same run on --batches' arrays, where TensorFlow (which
    `PretrainingRun` reads its data with) is not installed: the model,
    optimizer and switch as the run makes them, `fit` on numpy arrays."""
    import keras

    from keras_spactor import SpacTorT5
    from keras_spactor.callbacks import TauScheduler
    from keras_spactor.callbacks import TrainingProgress
    from keras_spactor.data import model_batch_arrays
    from keras_spactor.pretraining_run import make_optimizer

    keras.utils.set_random_seed(config.seed)
    model = SpacTorT5.from_preset(
        config.preset, tokenizer=tokenizer, seed=config.seed
    )
    model.compile(optimizer=make_optimizer(config))
    x, y, weights = model_batch_arrays(
        *_load_batches(args, f"pretrain_seed{config.seed}.npz")
    )
    tau = TauScheduler(config.tau, total_steps=config.steps)
    size = config.batch_size
    progress = TrainingProgress.for_model(
        model, size, config.inputs_length, y.shape[1]
    )
    for steps in (config.steps // 2, config.steps):
        start = time.time()
        # The arrays are the stream in order: skip what was trained on.
        rows = slice(progress.step * size, steps * size)
        model.fit(
            {k: v[rows] for k, v in x.items()},
            y[rows],
            sample_weight=weights[rows],
            batch_size=size,
            epochs=1,
            shuffle=False,
            verbose=0,
            callbacks=[tau, progress],
        )
        yield steps, model, progress.train_flops, round(time.time() - start, 1)


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


def probe(row, args, tasks):
    """Add each task's linear-probe accuracy (frozen encoder, the same
    labelled examples as fine-tuning) to the row."""
    from keras_spactor.evaluation import linear_probe

    for task, (train, evaluation) in tasks.items():
        metrics = linear_probe(
            row["preset"],
            train,
            evaluation,
            max_train_examples=args.finetune_examples,
            max_evaluation_examples=args.evaluation_examples,
        )
        row[_probe_key(task)] = metrics["accuracy"]
        row[f"{task}_majority"] = metrics["majority_accuracy"]


def downstream(row, args, tasks, out):
    """Probe and fine-tune the row's preset on every task, each way in
    `args.decoders`; add the accuracies to it."""
    from keras_spactor.evaluation import finetune

    probe(row, args, tasks)
    for decoder in args.decoders:
        for task, (train, evaluation) in tasks.items():
            name = f"{os.path.basename(row['preset'])}_{task}_{decoder}"
            metrics = finetune(
                row["preset"],
                train,
                evaluation,
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
# Each accuracy a row can hold -> its task.
METRIC_TASKS = {_accuracy_key(t, d): t for d in DECODERS for t in TASK_FILES}
METRIC_TASKS.update({_probe_key(t): t for t in TASK_FILES})
# Every metric a row can hold, in report order, and its column name.
FIT_METRICS = [_train_accuracy_key(t, d) for d in DECODERS for t in TASK_FILES]
METRICS = TRAINING_METRICS + list(METRIC_TASKS) + FIT_METRICS
METRIC_NAMES = {
    "validation_sc_loss": "val SC loss",
    "encoder_use": "encoder use",
    "encoder_token_cosine": "encoder cosine",
    **{
        _accuracy_key(t, d): f"{TASK_NAMES[t]} acc"
        + (" (fresh decoder)" if d == "fresh" else "")
        for d in DECODERS
        for t in TASK_FILES
    },
    **{_probe_key(t): f"{TASK_NAMES[t]} probe" for t in TASK_FILES},
    **{
        _train_accuracy_key(t, d): f"{TASK_NAMES[t]} train acc"
        + (" (fresh decoder)" if d == "fresh" else "")
        for d in DECODERS
        for t in TASK_FILES
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
    majority = {
        task: row[f"{task}_majority"]
        for row in rows
        for task in TASK_FILES
        if f"{task}_majority" in row
    }
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
    check_inputs(args)
    tasks = task_files(args.downstream)
    if args.probe_only:
        rows = _read_rows(rows_path)
        for row in rows:
            if _probe_key(next(iter(tasks))) not in row:
                probe(row, args, tasks)
                _append(rows_path, row)
        report(rows, args)
        return
    out = args.output_dir
    if os.path.exists(rows_path) and not args.export_batches:
        raise SystemExit(
            f"reproduce_paper: {out} already holds a run (rows.jsonl): "
            "choose another --output-dir, or pass --report-only"
        )
    os.makedirs(out, exist_ok=True)
    if args.task_text and not args.batches:
        task_text = write_task_text(tasks, os.path.join(out, "task_text"))
        args.corpus = [*args.corpus, task_text]
    if args.batches:
        vocabulary = os.path.join(args.batches, VOCABULARY)
    else:
        vocabulary = corpus_vocabulary(args)
    if args.export_batches:
        export_batches(args, vocabulary, tasks)
        return
    import keras
    import keras_hub

    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    tokenizer = keras_hub.models.T5Tokenizer(proto=vocabulary)
    start = time.time()
    rows = []

    def keep(row):
        _append(rows_path, row)
        rows.append(row)

    for seed in args.seeds:
        # Each row is kept as soon as it exists: a run cut short (a time
        # limit on a rented machine) still reports what it finished.
        keep(random_init(seed, tokenizer, args, out))
        for objective, tau in [("sc", 0)] + [("spactor", t) for t in args.tau]:
            pretrain(
                objective, tau, seed, vocabulary, tokenizer, args, out, keep
            )
    pretrain_minutes = (time.time() - start) / 60
    for row in _finetune_order(rows):
        downstream(row, args, tasks, out)
        _append(rows_path, row)
    minutes = {
        "pretraining": pretrain_minutes,
        "all": (time.time() - start) / 60,
    }
    report(rows, args, minutes)


if __name__ == "__main__":
    main()
