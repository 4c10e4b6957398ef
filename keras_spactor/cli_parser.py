"""The `keras-spactor` command line: its subcommands and their options.

Parsing only: `cli.py` maps the parsed options onto the package and
reports. One builder per subcommand, and one per group of options a
subcommand's help lists together.
"""

import argparse

from keras_spactor.pretraining_config import DEFAULT_OUTPUT_DIR

PRESET_DIRECTORY_HELP = "T5 preset dir (runs/x/preset)."


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
    """The `keras-spactor` parser: `pretrain`, `finetune` and `export`.

    Example:
    ```python
    args = build_parser().parse_args(["pretrain", "--steps", "8"])
    ```
    """
    parser = argparse.ArgumentParser(
        prog="keras-spactor",
        description="SpacTor-T5 pre-training (Keras 3, keras-hub).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_pretrain_parser(commands)
    _add_finetune_parser(commands)
    _add_export_parser(commands)
    return parser


def _add_pretrain_parser(commands):
    # No abbreviations: a resume compares the options given by their names.
    parser = commands.add_parser(
        "pretrain", help="Pre-train a T5 with SpacTor.", allow_abbrev=False
    )
    _add_model_and_data_options(parser)
    _add_optimizer_options(parser)
    _add_distribution_options(parser)
    _add_run_output_options(parser)
    _add_verbose(parser)


def _add_model_and_data_options(parser):
    """`pretrain`'s preset, text, vocabulary, steps, tau and batch shape."""
    parser.add_argument(
        "--preset",
        default="spactor_t5_tiny",
        help="SpacTor preset, preset directory or keras-hub T5 "
        "preset (default: %(default)s).",
    )
    parser.add_argument(
        "--data",
        default="builtin:python-docs",
        help="Text source: builtin:python-docs, tfds:c4/en, or "
        "JSONL/JSONL.gz/text paths, globs or folders, local or gs:// "
        "(default: "
        "%(default)s).",
    )
    parser.add_argument(
        "--vocabulary",
        default=None,
        help="SentencePiece model file (local or gs://) or keras-hub "
        "preset name. "
        "Default: a vocabulary trained on the embedded corpus and "
        "cached on first use.",
    )
    parser.add_argument("--steps", type=_positive_int, default=120)
    parser.add_argument(
        "--tau",
        type=_tau,
        default="50%",
        help="Stage switch: a step (e.g. 5000) or a percentage of --steps "
        "(e.g. 25%%). 0 = plain span corruption (default: %(default)s).",
    )
    parser.add_argument("--batch-size", type=_positive_int, default=8)
    parser.add_argument("--inputs-length", type=_positive_int, default=128)


def _add_optimizer_options(parser):
    """`pretrain`'s optimizer, schedule, seed, precision and throughput."""
    parser.add_argument(
        "--optimizer", choices=["adafactor", "adamw"], default="adamw"
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="Peak learning rate (default: 0.01 for Adafactor, "
        "1e-3 for AdamW).",
    )
    parser.add_argument(
        "--schedule",
        choices=["rsqrt", "cosine", "constant"],
        default="constant",
        help="rsqrt is T5's constant-then-inverse-square-root.",
    )
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--mixed-precision",
        action="store_true",
        help="bfloat16 compute (GPU/TPU).",
    )
    parser.add_argument("--steps-per-execution", type=_positive_int, default=1)
    parser.add_argument(
        "--peak-tflops",
        type=_positive_float,
        default=None,
        help="peak TFLOP/s of all the run's devices together (e.g. 989 for "
        "one H100 in bf16): logs mfu, the model FLOPs utilisation.",
    )


def _add_distribution_options(parser):
    """`pretrain`'s devices and processes."""
    parser.add_argument(
        "--distribution",
        choices=["none", "data", "model"],
        default="none",
        help="data: data parallel over all devices (JAX: keras.distribution;"
        " TF: TPUStrategy, else MirroredStrategy). model: (data, model) "
        "mesh, kernels sharded --model-shards ways (JAX only).",
    )
    parser.add_argument(
        "--model-shards",
        type=_positive_int,
        default=None,
        help="Size of the model axis for --distribution model.",
    )
    parser.add_argument(
        "--multi-process",
        action="store_true",
        help="Join a multi-process JAX run (every host of a TPU pod slice "
        "runs the same command; the pod gives the rest). Implied by the "
        "three options below; KERAS_DISTRIBUTION_JOB_ADDRESSES, "
        "_NUM_PROCESSES and _PROCESS_ID work too. Process 0 writes all "
        "files; --output-dir must be a folder every host sees (a gs:// "
        "bucket or a shared file system).",
    )
    parser.add_argument(
        "--coordinator-address",
        default=None,
        help="host:port of process 0 (multi-process).",
    )
    parser.add_argument(
        "--num-processes",
        type=_positive_int,
        default=None,
        help="Number of processes (multi-process).",
    )
    parser.add_argument(
        "--process-id",
        type=int,
        default=None,
        help="This process, 0 ... N-1 (multi-process).",
    )


def _add_run_output_options(parser):
    """`pretrain`'s checkpoints, held-out evaluation, outputs and resume."""
    parser.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        default=40,
        help="Steps between checkpoints (and log epochs).",
    )
    parser.add_argument(
        "--evaluate-every",
        type=_positive_int,
        default=None,
        help="Steps between held-out evaluations (span-corruption loss, "
        "encoder use, encoder token cosine), logged to TensorBoard in "
        "logs/validation (default: none).",
    )
    parser.add_argument(
        "--validation-data",
        default=None,
        help="Held-out text, as --data (default: the validation split of "
        "--data: a builtin corpus, TFDS, an hf: pattern, folders).",
    )
    parser.add_argument(
        "--validation-steps",
        type=_positive_int,
        default=20,
        help="Held-out batches per evaluation (default: %(default)s).",
    )
    parser.add_argument(
        "--output-dir",
        default=DEFAULT_OUTPUT_DIR,
        help="Where the run writes its checkpoints, config.json, data_state/,"
        " logs/, preset/ and summary.json: a folder, or a gs:// URL "
        f"(default {DEFAULT_OUTPUT_DIR}).",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="Continue the run in --output-dir from its last checkpoint. "
        "Its config.json gives every option left out; options that would "
        "change the data, the model or the curriculum must match it.",
    )


def _add_finetune_parser(commands):
    parser = commands.add_parser(
        "finetune",
        help="Fine-tune a preset on a labelled TSV with keras-hub's "
        "T5Seq2SeqLM and report rank-classification accuracy.",
    )
    parser.add_argument("--preset", required=True, help=PRESET_DIRECTORY_HELP)
    parser.add_argument(
        "--train",
        required=True,
        help="label<TAB>text TSV, builtin:sentiment-tiny (shipped, "
        "offline) or tfds:NAME[:SPLIT] (e.g. tfds:glue/sst2; split: train).",
    )
    parser.add_argument(
        "--validation",
        required=True,
        help="As --train; a tfds: or builtin: source reads its validation "
        "split unless one is named.",
    )
    parser.add_argument("--output-dir", required=True)
    _add_finetune_training_options(parser)
    _add_finetune_scoring_options(parser)
    _add_verbose(parser)


def _add_finetune_training_options(parser):
    """`finetune`'s step budget and optimizer."""
    from keras_spactor.evaluation.finetuning_inputs import DEFAULT_BATCH_SIZE
    from keras_spactor.evaluation.finetuning_inputs import DEFAULT_DROPOUT
    from keras_spactor.evaluation.finetuning_inputs import DEFAULT_LEARNING_RATE
    from keras_spactor.evaluation.finetuning_inputs import DEFAULT_STEPS

    parser.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help=f"Optimizer steps (default {DEFAULT_STEPS}; wins over --epochs).",
    )
    parser.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help="Passes over --train, when --steps is not given.",
    )
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=None,
        help="Linear learning-rate warmup (default: a tenth of the steps).",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=DEFAULT_BATCH_SIZE,
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=DEFAULT_LEARNING_RATE,
        help="AdamW's rate after warmup.",
    )
    parser.add_argument(
        "--dropout",
        type=float,
        default=DEFAULT_DROPOUT,
        help="The backbone's dropout while fine-tuning.",
    )


def _add_finetune_scoring_options(parser):
    """`finetune`'s scoring, decoder, lengths, example counts and seed."""
    from keras_spactor.evaluation.finetuning_inputs import DECODERS
    from keras_spactor.evaluation.rank_classification import DEFAULT_SCORING
    from keras_spactor.evaluation.rank_classification import SCORINGS

    parser.add_argument(
        "--scoring",
        choices=SCORINGS,
        default=DEFAULT_SCORING,
        help="Rank labels by their summed or per-token (mean) log-likelihood.",
    )
    parser.add_argument(
        "--decoder",
        choices=DECODERS,
        default="pretrained",
        help="'fresh': fine-tune the pre-trained encoder under a newly "
        "initialised decoder (untied T5 v1.1 embeddings only).",
    )
    parser.add_argument(
        "--generate",
        action="store_true",
        help="Also report greedy exact-match accuracy (slow).",
    )
    parser.add_argument("--encoder-length", type=_positive_int, default=64)
    parser.add_argument(
        "--decoder-length",
        type=_positive_int,
        default=None,
        help="Default: the longest label + EOS.",
    )
    parser.add_argument(
        "--max-train-examples", type=_positive_int, default=None
    )
    parser.add_argument(
        "--max-validation-examples", type=_positive_int, default=None
    )
    parser.add_argument("--seed", type=int, default=0)


def _add_export_parser(commands):
    parser = commands.add_parser(
        "export",
        help="Write a preset as a transformers T5 checkpoint "
        "(T5ForConditionalGeneration and AutoTokenizer load it).",
    )
    parser.add_argument("--preset", required=True, help=PRESET_DIRECTORY_HELP)
    parser.add_argument(
        "--output-dir", required=True, help="The checkpoint's folder."
    )
    parser.add_argument(
        "--max-shard-mb",
        type=_positive_int,
        default=50_000,
        help="Largest model-*.safetensors file, in MB (default: "
        "%(default)s, as transformers).",
    )
    _add_verbose(parser)


def _add_verbose(parser):
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="Show everything TensorFlow, JAX, CUDA and Keras print, known "
        "start-up noise and harmless warnings included.",
    )
