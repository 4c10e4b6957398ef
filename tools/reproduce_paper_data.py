"""The data of tools/reproduce_paper.py: the labelled tasks, the
task-adaptive pre-training text, the vocabulary, the held-out batches, and
--export-batches' files for a machine without TensorFlow."""

import json
import os
import shutil
import zlib

# `--downstream builtin`: the package's shipped examples (sentiment-tiny).
BUILTIN_DOWNSTREAM = "builtin"
# Each task's training and evaluation files in a --downstream folder.
TASK_FILES = {
    "sst2": ("sst2.train.tsv", "sst2.validation.tsv"),
    "trec": ("trec.train.tsv", "trec.test.tsv"),
    "sentiment_tiny": (
        "sentiment_tiny.train.tsv",
        "sentiment_tiny.validation.tsv",
    ),
}
# Every this-many-th task sentence is held out of the task-text corpus as
# its validation split.
TASK_TEXT_HOLDOUT = 20
# The held-out batches' seed: every arm and seed is measured on the same.
VALIDATION_SEED = 1234
# The files of --export-batches' directory: the SentencePiece model, the
# held-out batches, each seed's pre-training batches and the task files.
VOCABULARY = "vocabulary.model"
VALIDATION_BATCHES = "validation.npz"
DOWNSTREAM = "downstream"


def pretraining_batches(directory, seed):
    """A seed's pre-training batches in --export-batches' directory."""
    return os.path.join(directory, f"pretrain_seed{seed}.npz")


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
    """Exits with one line naming the data that is missing."""
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


def held_out_batches(preprocessor, args):
    """The validation batches every preset is measured on."""
    if not args.batches:
        return _validation_dataset(preprocessor, args)
    from keras_spactor.data.array_batches import ArrayBatches

    path = os.path.join(args.batches, VALIDATION_BATCHES)
    return list(ArrayBatches(path, args.batch_size, preprocessor).batches())


def export_batches(args, vocabulary, tasks):
    """Everything the run reads, as files: the vocabulary, the batches
    (`keras_spactor.data.array_batches`) and the task files."""
    import keras
    import keras_hub

    from keras_spactor.data.array_batches import write_array_batches

    directory = args.export_batches
    os.makedirs(os.path.join(directory, DOWNSTREAM), exist_ok=True)
    shutil.copy(vocabulary, os.path.join(directory, VOCABULARY))
    for paths in tasks.values():
        for path in paths:
            shutil.copy(path, os.path.join(directory, DOWNSTREAM))
    tokenizer = keras_hub.models.T5Tokenizer(proto=vocabulary)
    streams = [(os.path.join(directory, VALIDATION_BATCHES), None)]
    streams += [(pretraining_batches(directory, s), s) for s in args.seeds]
    for path, seed in streams:
        if seed is None:
            dataset = _validation_dataset(tokenizer, args)
        else:
            # Seeded as `PretrainingRun` seeds before it reads the text:
            # the shuffles depend on the global seed too.
            keras.utils.set_random_seed(seed)
            dataset = _pretraining_dataset(tokenizer, args, seed)
            dataset = dataset.take(args.steps)
        examples = write_array_batches(path, dataset.as_numpy_iterator())
        name = os.path.basename(path)
        print(f"wrote {name}: {examples} examples", flush=True)
