"""`keras-spactor`: SpacTor-T5 pre-training, fine-tuning and export from
the command line.

`cli_parser` parses the options; each command here maps them onto the
package (`PretrainingRun`, `evaluation.finetune`,
`interchange.export_to_transformers`) and reports: the result as JSON,
each error the package raises for a bad setting as one line naming the
option, and exit status 2.

The default run is offline: the tiny preset on the embedded corpus
(`builtin:python-docs`) with a vocabulary trained and cached on first use.
"""

import json
import os
import re
import sys

from keras_spactor import cli_output
from keras_spactor import file_paths
from keras_spactor.cli_parser import build_parser


def fail(message):
    print(f"keras-spactor: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def flag_names(message, names=None):
    """A message with each setting it names in backticks (`batch_size`)
    spelled as its option (--batch-size).

    Args:
        message: str.
        names: the setting names to spell as options; default: a
            pre-training run's (`PretrainingConfig`'s fields and `resume`).
    """
    if names is None:
        import dataclasses

        from keras_spactor.pretraining_config import PretrainingConfig

        fields = dataclasses.fields(PretrainingConfig)
        names = {field.name for field in fields} | {"resume"}

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
    """`keras-spactor finetune`: `evaluation.finetune` of the options, into
    an --output-dir that holds no results yet; each setting or labelled
    source it cannot use is one line and exit status 2."""
    from keras_spactor.evaluation import FinetuningInputError
    from keras_spactor.evaluation import finetune

    if not os.path.isdir(args.preset):
        fail(f"preset directory {args.preset!r} does not exist")
    output_dir = args.output_dir
    if file_paths.exists(output_dir) and file_paths.listdir(output_dir):
        fail(f"{output_dir} already holds results; choose another")
    try:
        metrics = finetune(
            args.preset,
            args.train,
            args.validation,
            output_dir,
            steps=args.steps,
            epochs=args.epochs,
            warmup_steps=args.warmup_steps,
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
    except FinetuningInputError as error:
        fail(flag_names(str(error), names=vars(args)))
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
