"""`keras-spactor pretrain`: SpacTor-T5 pre-training from the command line.

The default run is offline: the tiny preset on the embedded corpus
(`builtin:python-docs`) with a vocabulary trained and cached on first use.
"""

import argparse
import atexit
import json
import os
import re
import shutil
import sys
import tempfile

from keras_spactor import cli_output
from keras_spactor import file_paths
from keras_spactor.pretraining_config import DEFAULT_OUTPUT_DIR


def _positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text}")
    return value


def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(
            f"expected a positive number, got {text}"
        )
    return value


def _tau(text):
    from keras_spactor.callbacks.tau_scheduler import parse_tau

    try:
        return parse_tau(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-spactor",
        description="SpacTor-T5 pre-training (Keras 3, keras-hub).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    # No abbreviations: a resume compares the options given by their names.
    p = commands.add_parser(
        "pretrain", help="Pre-train a T5 with SpacTor.", allow_abbrev=False
    )
    p.add_argument(
        "--preset",
        default="spactor_t5_tiny",
        help="SpacTor preset, preset directory or keras-hub T5 "
        "preset (default: %(default)s).",
    )
    p.add_argument(
        "--data",
        default="builtin:python-docs",
        help="Text source: builtin:python-docs, tfds:c4/en, or "
        "JSONL/JSONL.gz/text paths, globs or folders, local or gs:// "
        "(default: "
        "%(default)s).",
    )
    p.add_argument(
        "--vocabulary",
        default=None,
        help="SentencePiece model file (local or gs://) or keras-hub "
        "preset name. "
        "Default: a vocabulary trained on the embedded corpus and "
        "cached on first use.",
    )
    p.add_argument("--steps", type=_positive_int, default=120)
    p.add_argument(
        "--tau",
        type=_tau,
        default="50%",
        help="Stage switch: a step (e.g. 5000) or a percentage of --steps "
        "(e.g. 25%%). 0 = plain span corruption (default: %(default)s).",
    )
    p.add_argument("--batch-size", type=_positive_int, default=8)
    p.add_argument("--inputs-length", type=_positive_int, default=128)
    p.add_argument(
        "--optimizer", choices=["adafactor", "adamw"], default="adamw"
    )
    p.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="Peak learning rate (default: 0.01 for Adafactor, "
        "1e-3 for AdamW).",
    )
    p.add_argument(
        "--schedule",
        choices=["rsqrt", "cosine", "constant"],
        default="constant",
        help="rsqrt is T5's constant-then-inverse-square-root.",
    )
    p.add_argument("--warmup-steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--mixed-precision",
        action="store_true",
        help="bfloat16 compute (GPU/TPU).",
    )
    p.add_argument("--steps-per-execution", type=_positive_int, default=1)
    p.add_argument(
        "--peak-tflops",
        type=_positive_float,
        default=None,
        help="peak TFLOP/s of all the run's devices together (e.g. 989 for "
        "one H100 in bf16): logs mfu, the model FLOPs utilisation.",
    )
    p.add_argument(
        "--distribution",
        choices=["none", "data", "model"],
        default="none",
        help="data: data parallel over all devices (JAX: keras.distribution;"
        " TF: TPUStrategy, else MirroredStrategy). model: (data, model) "
        "mesh, kernels sharded --model-shards ways (JAX only).",
    )
    p.add_argument(
        "--model-shards",
        type=_positive_int,
        default=None,
        help="Size of the model axis for --distribution model.",
    )
    p.add_argument(
        "--multi-process",
        action="store_true",
        help="Join a multi-process JAX run (every host of a TPU pod slice "
        "runs the same command; the pod gives the rest). Implied by the "
        "three options below; KERAS_DISTRIBUTION_JOB_ADDRESSES, "
        "_NUM_PROCESSES and _PROCESS_ID work too. Process 0 writes all "
        "files; --output-dir must be a folder every host sees (a gs:// "
        "bucket or a shared file system).",
    )
    p.add_argument(
        "--coordinator-address",
        default=None,
        help="host:port of process 0 (multi-process).",
    )
    p.add_argument(
        "--num-processes",
        type=_positive_int,
        default=None,
        help="Number of processes (multi-process).",
    )
    p.add_argument(
        "--process-id",
        type=int,
        default=None,
        help="This process, 0 ... N-1 (multi-process).",
    )
    p.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        default=40,
        help="Steps between checkpoints (and log epochs).",
    )
    p.add_argument(
        "--evaluate-every",
        type=_positive_int,
        default=None,
        help="Steps between held-out evaluations (span-corruption loss, "
        "encoder use, encoder token cosine), logged to TensorBoard in "
        "logs/validation (default: none).",
    )
    p.add_argument(
        "--validation-data",
        default=None,
        help="Held-out text, as --data (default: the validation split of "
        "--data: a builtin corpus, TFDS, an hf: pattern, folders).",
    )
    p.add_argument(
        "--validation-steps",
        type=_positive_int,
        default=20,
        help="Held-out batches per evaluation (default: %(default)s).",
    )
    p.add_argument(
        "--output-dir",
        default=DEFAULT_OUTPUT_DIR,
        help="Where the run writes its checkpoints, config.json, data_state/,"
        " logs/, preset/ and summary.json: a folder, or a gs:// URL "
        f"(default {DEFAULT_OUTPUT_DIR}).",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="Continue the run in --output-dir from its last checkpoint. "
        "Its config.json gives every option left out; options that would "
        "change the data, the model or the curriculum must match it.",
    )
    _add_verbose(p)

    from keras_spactor.evaluation import finetuning as finetune

    f = commands.add_parser(
        "finetune",
        help="Fine-tune a preset on a labelled TSV with keras-hub's "
        "T5Seq2SeqLM and report rank-classification accuracy.",
    )
    f.add_argument(
        "--preset", required=True, help="T5 preset dir (runs/x/preset)."
    )
    f.add_argument(
        "--train",
        required=True,
        help="label<TAB>text TSV, builtin:sentiment-tiny (shipped, "
        "offline) or tfds:NAME[:SPLIT] (e.g. tfds:glue/sst2; split: train).",
    )
    f.add_argument(
        "--validation",
        required=True,
        help="As --train; a tfds: or builtin: source reads its validation "
        "split unless one is named.",
    )
    f.add_argument("--output-dir", required=True)
    f.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help=f"Optimizer steps (default {finetune.DEFAULT_STEPS}; wins over "
        "--epochs).",
    )
    f.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help="Passes over --train, when --steps is not given.",
    )
    f.add_argument(
        "--warmup-steps",
        type=int,
        default=None,
        help="Linear learning-rate warmup (default: a tenth of the steps).",
    )
    f.add_argument(
        "--batch-size", type=_positive_int, default=finetune.DEFAULT_BATCH_SIZE
    )
    f.add_argument(
        "--learning-rate",
        type=float,
        default=finetune.DEFAULT_LEARNING_RATE,
        help="AdamW's rate after warmup.",
    )
    f.add_argument(
        "--dropout",
        type=float,
        default=finetune.DEFAULT_DROPOUT,
        help="The backbone's dropout while fine-tuning.",
    )
    f.add_argument(
        "--scoring",
        choices=finetune.SCORINGS,
        default=finetune.DEFAULT_SCORING,
        help="Rank labels by their summed or per-token (mean) log-likelihood.",
    )
    f.add_argument(
        "--decoder",
        choices=finetune.DECODERS,
        default="pretrained",
        help="'fresh': fine-tune the pre-trained encoder under a newly "
        "initialised decoder (untied T5 v1.1 embeddings only).",
    )
    f.add_argument(
        "--generate",
        action="store_true",
        help="Also report greedy exact-match accuracy (slow).",
    )
    f.add_argument("--encoder-length", type=_positive_int, default=64)
    f.add_argument(
        "--decoder-length",
        type=_positive_int,
        default=None,
        help="Default: the longest label + EOS.",
    )
    f.add_argument("--max-train-examples", type=_positive_int, default=None)
    f.add_argument(
        "--max-validation-examples", type=_positive_int, default=None
    )
    f.add_argument("--seed", type=int, default=0)
    _add_verbose(f)

    e = commands.add_parser(
        "export",
        help="Write a preset as a transformers T5 checkpoint "
        "(T5ForConditionalGeneration and AutoTokenizer load it).",
    )
    e.add_argument(
        "--preset", required=True, help="T5 preset dir (runs/x/preset)."
    )
    e.add_argument(
        "--output-dir", required=True, help="The checkpoint's folder."
    )
    e.add_argument(
        "--max-shard-mb",
        type=_positive_int,
        default=50_000,
        help="Largest model-*.safetensors file, in MB (default: "
        "%(default)s, as transformers).",
    )
    _add_verbose(e)
    return parser


def _add_verbose(parser):
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="Show everything TensorFlow, JAX, CUDA and Keras print, known "
        "start-up noise and harmless warnings included.",
    )


def fail(message):
    print(f"keras-spactor: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def flag_names(message):
    """A run's message with each setting it names in backticks
    (`batch_size`) spelled as its option (--batch-size)."""
    import dataclasses

    from keras_spactor.pretraining_config import PretrainingConfig

    names = {field.name for field in dataclasses.fields(PretrainingConfig)}
    names.add("resume")

    def flag(match):
        name = match.group(1)
        if name not in names:
            return match.group(0)
        return "--" + name.replace("_", "-")

    return re.sub(r"`(\w+)`", flag, message)


def explicit_options(argv):
    """The argument names given on the command line (`--batch-size 8` and
    `--batch-size=8` give `batch_size`); the parser must not accept
    abbreviations."""
    names = set()
    for token in argv:
        if token.startswith("--") and len(token) > 2:
            names.add(token[2:].split("=", 1)[0].replace("-", "_"))
    return names


def config_from_arguments(args):
    """The `PretrainingConfig` of parsed `pretrain` arguments."""
    import dataclasses

    from keras_spactor.callbacks.tau_scheduler import format_tau
    from keras_spactor.pretraining_config import PretrainingConfig

    names = {field.name for field in dataclasses.fields(PretrainingConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    # argparse gives the parsed tau (0.25 for 25%); the config its text.
    values["tau"] = format_tau(values["tau"])
    return PretrainingConfig(**values)


def saved_run(args):
    """The `config.json` of the run `--resume` continues, or `None` when
    there is none (a run from an earlier version, or no run: the run then
    says what is missing)."""
    from keras_spactor.pretraining_config import read_run_config

    checkpoint = os.path.join(args.output_dir, "checkpoint.keras")
    try:
        if not file_paths.exists(checkpoint):
            return None
        return read_run_config(args.output_dir)
    except ValueError as error:
        fail(f"--resume: {error}")
    except OSError:  # e.g. an unknown scheme: the run's checks name it
        return None


def pretraining_config(args):
    """The run's config. A resume takes every option left out from the
    saved run; one given that contradicts it fails, naming each."""
    from keras_spactor.errors import ConfigError
    from keras_spactor.pretraining_config import PretrainingConfig

    saved = saved_run(args) if args.resume else None
    if saved is not None:
        # Everything left out is the run's (--checkpoint-every, --steps, ...).
        explicit = getattr(args, "explicit", set())
        for name, value in saved["arguments"].items():
            if name not in explicit and name != "output_dir":
                setattr(args, name, value)
    try:
        config = config_from_arguments(args)
        if saved is None:
            return config
        mismatches = config.resume_mismatches(
            PretrainingConfig.from_dict(saved)
        )
    except ConfigError as error:
        fail(flag_names(str(error)))
    if mismatches:
        fail(
            f"--resume: the run in {args.output_dir} was started with other "
            "settings (leave an option out to keep the run's):\n  "
            + "\n  ".join(flag_names(line) for line in mismatches.values())
        )
    return config


def is_multi_process(args):
    """Whether this run joins others (flags or Keras's variables)."""
    return bool(
        args.multi_process
        or args.coordinator_address
        or args.num_processes is not None
        or args.process_id is not None
        or os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES")
    )


def join_processes(args):
    """Connect to the other processes before anything runs on JAX;
    returns this process's index and the process count."""
    from keras_spactor import distribution

    try:
        return distribution.initialize_processes(
            args.coordinator_address, args.num_processes, args.process_id
        )
    except ValueError as error:
        fail(str(error))


def check_multi_process(args, count):
    """What a multi-process run needs of the (reconciled) arguments."""
    import jax

    from keras_spactor.errors import ConfigError

    try:
        config_from_arguments(args).check_processes(
            count, jax.local_device_count()
        )
    except ConfigError as error:
        fail(flag_names(str(error)))


def pretrain(args):
    """`keras-spactor pretrain`: a `PretrainingRun` of the options; each
    of its errors is one line and exit status 2."""
    from keras_spactor.errors import RunError
    from keras_spactor.pretraining_run import PretrainingRun

    count = 1
    if is_multi_process(args):
        _, count = join_processes(args)
    config = pretraining_config(args)
    if count > 1:
        check_multi_process(args, count)
    try:
        summary = PretrainingRun(config, resume=args.resume).run()
    except RunError as error:
        fail(flag_names(str(error)))
    print(json.dumps(summary, indent=2))
    return summary


def _ties_embeddings(preset):
    """Whether a keras-hub T5 preset directory ties its embeddings."""
    try:
        with open(os.path.join(preset, "config.json")) as f:
            config = json.load(f)["config"]
    except (OSError, ValueError, KeyError) as error:
        fail(f"{preset}: no readable keras-hub config.json ({error})")
    return bool(config.get("tie_embedding_weights", False))


def run_export(args):
    from keras_spactor.interchange import export_to_transformers

    if not os.path.isdir(args.preset):
        fail(f"preset directory {args.preset!r} does not exist")
    if os.path.exists(args.output_dir) and os.listdir(args.output_dir):
        fail(f"{args.output_dir} already holds files; choose another")
    try:
        files = export_to_transformers(
            args.preset,
            args.output_dir,
            max_shard_bytes=args.max_shard_mb * 1000**2,
        )
    except ValueError as error:
        fail(str(error))
    print(f"Wrote {', '.join(files)} to {args.output_dir}")
    return files


def run_finetune(args):
    from keras_spactor.evaluation import finetuning as finetune
    from keras_spactor.labelled_data import labelled_file

    if not os.path.isdir(args.preset):
        fail(f"preset directory {args.preset!r} does not exist")
    output_dir = args.output_dir
    if file_paths.exists(output_dir) and file_paths.listdir(output_dir):
        fail(f"{output_dir} already holds results; choose another")
    if args.learning_rate <= 0:
        fail(f"--learning-rate must be positive, got {args.learning_rate}")
    if not 0 <= args.dropout < 1:
        fail(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.decoder == "fresh" and _ties_embeddings(args.preset):
        fail(
            f"--decoder fresh: {args.preset} ties its output head to the "
            "input embedding (T5 v1.0), so the decoder cannot be drawn anew "
            "without losing the encoder's embedding"
        )
    data_dir = os.path.join(args.output_dir, "data")
    if file_paths.is_remote(data_dir):
        # TFDS splits are written and read as local TSV files.
        data_dir = tempfile.mkdtemp(prefix="keras-spactor-data-")
        atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
    try:
        try:
            args.train = labelled_file(args.train, "train", data_dir)
            args.validation = labelled_file(
                args.validation, "validation", data_dir
            )
        except BaseException:
            # A TFDS split half written (no network, a bad name) must not
            # make the rerun find --output-dir taken.
            shutil.rmtree(data_dir, ignore_errors=True)
            raise
        # Read and check both files before any model is loaded.
        train_labels, _ = finetune.read_labelled_tsv(
            args.train, args.max_train_examples
        )
        validation_labels, _ = finetune.read_labelled_tsv(
            args.validation, args.max_validation_examples
        )
        finetune.check_labels(train_labels, validation_labels, args.validation)
    except (OSError, ValueError) as error:
        fail(str(error))
    steps = finetune.training_steps(
        args.steps, args.epochs, len(train_labels), args.batch_size
    )
    warmup_steps = args.warmup_steps
    if warmup_steps is None:
        warmup_steps = finetune.default_warmup_steps(steps)
    if not 0 <= warmup_steps <= steps:
        fail(f"--warmup-steps {warmup_steps} is not in [0, {steps} steps]")
    metrics = finetune.finetune(
        args.preset,
        args.train,
        args.validation,
        args.output_dir,
        steps=steps,
        warmup_steps=warmup_steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        dropout=args.dropout,
        scoring=args.scoring,
        decoder=args.decoder,
        generate=args.generate,
        encoder_length=args.encoder_length,
        decoder_length=args.decoder_length,
        max_train_examples=args.max_train_examples,
        max_validation_examples=args.max_validation_examples,
        seed=args.seed,
    )
    print(json.dumps(metrics, indent=2))
    return metrics


def main(argv=None):
    # Started when the package was imported, if this process is the CLI;
    # else (`main` called from Python) below, where TensorFlow may already
    # be loaded and have logged.
    stderr = cli_output.take_started_filter()
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        args = build_parser().parse_args(argv)
        if args.command == "pretrain":
            args.explicit = explicit_options(argv)
        if stderr is None and not args.verbose:
            stderr = cli_output.quiet_output()
        if args.command == "pretrain":
            pretrain(args)
        elif args.command == "finetune":
            run_finetune(args)
        elif args.command == "export":
            run_export(args)
    finally:
        if stderr is not None:
            stderr.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
