"""The paper's claim at small scale: does pre-training help, and SpacTor vs SC.

For each seed: a randomly initialised model (the baseline), span corruption
(tau=0) and SpacTor (each --tau), each pre-trained by
`keras_spactor.PretrainingRun` for N steps with presets kept at N/2 and N;
every preset measured on held-out text, probed and fine-tuned on each task
(tools/reproduce_paper_measures.py). The report (tools/
reproduce_paper_report.py: results.md, results.json, accuracy.png in
--output-dir) has means over seeds and paired differences per seed
(pre-trained - random init, SpacTor - SC). The paper's claim (Ye et al.,
2024): SpacTor at N/2 steps matches SC at N steps.

    # Minutes, on what the repository ships (embedded corpus and
    # sentiment-tiny): a smoke run, not a measurement.
    KERAS_BACKEND=jax python tools/reproduce_paper.py --setting quick
    # BENCHMARKS.md's experiment (at most 90 minutes on 2 CPU cores):
    KERAS_BACKEND=jax python tools/reproduce_paper.py --downstream DIR

`cpu90` (the default) and `h100_small` (tools/gpu_reproduce.sh) fine-tune
on SST-2 and TREC, which the repository does not ship: --downstream DIR
holds `sst2.train.tsv`, `sst2.validation.tsv`, `trec.train.tsv` and
`trec.test.tsv` (`label<TAB>text`). Earlier settings: BENCHMARKS.md.
"""

import argparse
import json
import os
import sys
import time

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(TOOLS), TOOLS]

import reproduce_paper_data as data  # noqa: E402
import reproduce_paper_measures as measures  # noqa: E402
import reproduce_paper_report as report  # noqa: E402

# What a setting does not set.
DEFAULTS = {
    "preset": "spactor_t5_nano",
    "corpus": [],
    "task_text": True,
    "downstream": None,
    "seeds": [0],
    "batch_size": 64,
    "inputs_length": 64,
    "optimizer": "adamw",
    "learning_rate": 1e-3,
    "schedule": "cosine",
    "vocabulary_size": 2000,
    "validation_batches": 20,
    "finetune_examples": None,
    "finetune_learning_rate": 3e-4,
    "decoders": ["pretrained"],
    "evaluation_examples": None,
    "mixed_precision": False,
}
SETTINGS = {
    # Task-adaptive pre-training on the tasks' own training sentences,
    # where the decoder starts reading its encoder within the budget, with
    # T5's optimizer (Adafactor scales each update by the weight's RMS, so
    # the N(0, 1) token embeddings learn as fast as the rest); then
    # fine-tuning on every labelled example, long enough to fit them.
    "cpu90": {
        "steps": 3000,
        "tau": [750],
        "seeds": [0, 1, 2],
        "optimizer": "adafactor",
        "learning_rate": 1e-2,
        "schedule": "constant",
        "finetune_steps": 1500,
        "finetune_learning_rate": 1e-3,
    },
    # T5 v1.1 small shape, bf16, on one GPU in about 9 minutes
    # (tools/gpu_reproduce.sh; sized from the step time in BENCHMARKS.md).
    "h100_small": {
        "preset": "spactor_t5_small",
        "steps": 1000,
        "tau": [250],
        "inputs_length": 128,
        "vocabulary_size": 8000,
        "finetune_examples": 10000,
        "finetune_steps": 300,
        "mixed_precision": True,
    },
    # A smoke run of minutes on what the repository ships.
    "quick": {
        "corpus": ["builtin:python-docs"],
        "task_text": False,
        "downstream": data.BUILTIN_DOWNSTREAM,
        "steps": 8,
        "tau": [2],
        "batch_size": 4,
        "validation_batches": 2,
        "finetune_examples": 64,
        "finetune_steps": 4,
        "decoders": list(report.DECODERS),
        "evaluation_examples": 32,
    },
}


def build_parser():
    """The flags; those not given are `None` (`parse_args` fills them)."""
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
    p.add_argument("--steps", type=int, help="N (even: presets at N/2, N)")
    p.add_argument(
        "--tau",
        type=int,
        nargs="+",
        help="SpacTor switch steps to compare. tau=N is hybrid throughout.",
    )
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--optimizer", choices=["adamw", "adafactor"])
    p.add_argument("--schedule", choices=["constant", "rsqrt", "cosine"])
    p.add_argument(
        "--warmup-steps", type=int, help="Default: a tenth of the steps."
    )
    for flag, kind in [
        ("--preset", str),
        ("--batch-size", int),
        ("--inputs-length", int),
        ("--learning-rate", float),
        ("--vocabulary-size", int),
        ("--validation-batches", int),
        ("--finetune-examples", int),
        ("--finetune-steps", int),
        ("--finetune-learning-rate", float),
        ("--evaluation-examples", int),
    ]:
        p.add_argument(flag, type=kind)
    p.add_argument(
        "--decoders",
        nargs="+",
        choices=report.DECODERS,
        help="Fine-tune each preset whole ('pretrained') and/or its encoder "
        "under a newly drawn decoder ('fresh').",
    )
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
    return p


def parse_args(argv=None):
    """The flags, with the setting's values (then `DEFAULTS`) for those
    not given."""
    args = build_parser().parse_args(argv)
    for key, value in {**DEFAULTS, **SETTINGS[args.setting]}.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.warmup_steps is None:
        args.warmup_steps = args.steps // 10
    if args.steps % 2:
        raise SystemExit(
            f"reproduce_paper: --steps {args.steps} must be even (presets "
            "are kept at N/2 and N)"
        )
    return args


# The arms: a random initialisation, and pre-training runs.


def _arm_name(objective, tau):
    return "sc" if objective == "sc" else f"spactor_tau{tau}"


def random_init(seed, preprocessor, args, out):
    """The untrained model of this seed (the one each run of the seed
    starts from), saved as a preset; its row."""
    import keras

    from keras_spactor import SpacTorT5

    keras.utils.set_random_seed(seed)
    model = SpacTorT5.from_preset(
        args.preset, preprocessor=preprocessor, seed=seed
    )
    arm = {"objective": "random", "tau": None, "seed": seed}
    training = {"steps": 0, "train_flops": 0, "train_seconds": 0.0}
    preset = os.path.join(out, f"random_seed{seed}")
    return measures.preset_row(model, preset, preprocessor, args, arm, training)


# `PretrainingConfig` fields that are the tool's settings of the same name.
RUN_SETTINGS = (
    "preset",
    "steps",
    "batch_size",
    "inputs_length",
    "optimizer",
    "learning_rate",
    "schedule",
    "warmup_steps",
    "mixed_precision",
)


def pretraining_config(objective, tau, seed, vocabulary, args, out):
    """The `PretrainingConfig` of one arm and seed: checkpoints at N/2 and
    N, the package's optimizer recipe."""
    import keras_spactor

    if args.batches:
        source = data.pretraining_batches(args.batches, seed)
    else:
        source = ",".join(args.corpus)
    return keras_spactor.PretrainingConfig(
        data=source,
        vocabulary=vocabulary,
        output_dir=os.path.join(
            out, "pretraining", f"{_arm_name(objective, tau)}_seed{seed}"
        ),
        tau=tau,
        seed=seed,
        checkpoint_every=args.steps // 2,
        **{name: getattr(args, name) for name in RUN_SETTINGS},
    )


def pretrain(objective, tau, seed, vocabulary, preprocessor, args, out):
    """Pre-trains one arm with a `PretrainingRun`; yields the rows of its
    presets at N/2 (the checkpoint kept before the last) and N."""
    import keras

    import keras_spactor
    from keras_spactor.callbacks.atomic_checkpoint import previous_path

    config = pretraining_config(objective, tau, seed, vocabulary, args, out)
    run = keras_spactor.PretrainingRun(config)
    summary = run.run()
    half = keras.saving.load_model(previous_path(run.checkpoint_path))
    steps = int(keras.ops.convert_to_numpy(half.optimizer.iterations))
    if steps != config.steps // 2:
        raise RuntimeError(f"the checkpoint before the last is at {steps}")
    arm = {"objective": objective, "tau": tau, "seed": seed}
    half_flops = measures.flops_at(summary, steps)
    for model, training in [
        (half, {"steps": steps, "train_flops": half_flops}),
        (
            run.model,
            {
                "steps": config.steps,
                "train_flops": summary["train_flops"],
                "train_seconds": summary["wall_time_s"],
            },
        ),
    ]:
        name = f"{_arm_name(objective, tau)}_seed{seed}_step{training['steps']}"
        preset = os.path.join(out, name)
        row = measures.preset_row(
            model, preset, preprocessor, args, arm, training
        )
        print(json.dumps(row), flush=True)
        yield row


def write_report(rows, args, minutes=None):
    report.write_report(
        rows,
        report.comparisons(args.steps, args.tau),
        args.output_dir,
        vars(args),
        minutes,
    )


def main(argv=None):
    args = parse_args(argv)
    rows_path = os.path.join(args.output_dir, "rows.jsonl")
    if args.report_only:
        write_report(report.read_rows(rows_path), args)
        return
    data.check_inputs(args)
    tasks = data.task_files(args.downstream)
    if args.probe_only:
        rows = report.read_rows(rows_path)
        for row in rows:
            if report.probe_key(next(iter(tasks))) not in row:
                measures.probe(row, args, tasks)
                report.append_row(rows_path, row)
        write_report(rows, args)
        return
    out = args.output_dir
    if os.path.exists(rows_path) and not args.export_batches:
        raise SystemExit(
            f"reproduce_paper: {out} already holds a run (rows.jsonl): "
            "choose another --output-dir, or pass --report-only"
        )
    os.makedirs(out, exist_ok=True)
    if args.task_text and not args.batches:
        task_text = data.write_task_text(tasks, os.path.join(out, "task_text"))
        args.corpus = [*args.corpus, task_text]
    if args.batches:
        vocabulary = os.path.join(args.batches, data.VOCABULARY)
    else:
        vocabulary = data.corpus_vocabulary(args)
    if args.export_batches:
        data.export_batches(args, vocabulary, tasks)
        return
    import keras
    import keras_hub

    from keras_spactor.models import SpacTorT5Preprocessor

    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    preprocessor = SpacTorT5Preprocessor(
        keras_hub.models.T5Tokenizer(proto=vocabulary),
        inputs_length=args.inputs_length,
    )
    start = time.time()
    rows = []

    def keep(row):
        # Kept as soon as it exists: a run cut short (a time limit on a
        # rented machine) still reports what it finished.
        report.append_row(rows_path, row)
        rows.append(row)

    for seed in args.seeds:
        keep(random_init(seed, preprocessor, args, out))
        for objective, tau in [("sc", 0)] + [("spactor", t) for t in args.tau]:
            for row in pretrain(
                objective, tau, seed, vocabulary, preprocessor, args, out
            ):
                keep(row)
    pretrain_minutes = (time.time() - start) / 60
    for row in measures.finetune_order(rows):
        measures.finetune_and_probe(row, args, tasks, out)
        report.append_row(rows_path, row)
    minutes = {
        "pretraining": pretrain_minutes,
        "all": (time.time() - start) / 60,
    }
    write_report(rows, args, minutes)


if __name__ == "__main__":
    main()
