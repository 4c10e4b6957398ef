"""`keras-spactor pretrain`: SpacTor-T5 pre-training from the command line.

The default run is offline: the tiny preset on the embedded corpus
(`builtin:python-docs`) with a vocabulary trained and cached on first use.
"""

import argparse
import atexit
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time

from keras_spactor import cli_output
from keras_spactor import file_paths

DEFAULT_OUTPUT_DIR = os.path.join("runs", "spactor")


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

    from keras_spactor import finetune

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


def check_arguments(args, chief=True):
    """Every cheap check before any long work starts (`chief`: the process
    that writes the run's files, whose output folder must be new)."""
    from keras_spactor.models.spactor_presets import SPACTOR_PRESETS

    checkpoint = os.path.join(args.output_dir, "checkpoint.keras")
    if file_paths.is_remote(args.output_dir):
        try:  # an unknown scheme, no credentials, ...
            file_paths.exists(args.output_dir)
        except OSError as error:
            fail(f"--output-dir: {error}")
    if args.resume:
        if not file_paths.exists(checkpoint):
            fail(f"--resume: there is no checkpoint to resume at {checkpoint}")
        reconcile_with_saved_run(args)

    if args.preset not in SPACTOR_PRESETS and not os.path.isdir(args.preset):
        if not args.preset.startswith(("t5", "hf://")):
            fail(
                f"unknown preset {args.preset!r}; valid presets: "
                f"{', '.join(sorted(SPACTOR_PRESETS))} (or a preset "
                "directory, a keras-hub T5 preset such as t5_1.1_base, or "
                "a transformers T5: hf://owner/name or its folder)"
            )
    if isinstance(args.tau, int) and args.tau > args.steps:
        fail(f"--tau {args.tau} is larger than the run (--steps {args.steps})")
    from keras_spactor.data.sources import check_source

    try:
        check_source(args.data)
    except (ImportError, OSError, ValueError) as error:
        fail(f"--data: {error}")
    if args.model_shards and args.distribution != "model":
        fail("--model-shards needs --distribution model")
    if args.distribution == "model":
        import keras

        if keras.backend.backend() != "jax":
            fail(
                "model parallelism needs the JAX backend (KERAS_BACKEND=jax);"
                " on TensorFlow use --distribution data"
            )
        if not args.model_shards:
            fail("--distribution model needs --model-shards N")
    if chief and not args.resume and file_paths.exists(args.output_dir):
        if file_paths.listdir(args.output_dir):
            fail(
                f"{args.output_dir} already holds a run; pass --resume to "
                "continue it or choose another --output-dir"
            )


def reconcile_with_saved_run(args):
    """A resume takes the run's saved settings; one it contradicts fails."""
    from keras_spactor import run_config

    try:
        saved = run_config.read_run_config(args.output_dir)
    except ValueError as error:
        fail(f"--resume: {error}")
    if saved is None:
        print(
            f"keras-spactor: {args.output_dir} has no config.json (a run "
            "from an earlier version): resuming with the options given, "
            "unchecked.",
            file=sys.stderr,
        )
        return
    explicit = getattr(args, "explicit", set())
    mismatches = run_config.reconcile_resume(args, saved, explicit)
    if mismatches:
        fail(
            f"--resume: the run in {args.output_dir} was started with other "
            "settings (leave an option out to keep the run's):\n  "
            + "\n  ".join(mismatches)
        )
    args.saved_tau_step = saved.get("tau_step")


def load_checkpoint(checkpoint):
    """The model saved in `checkpoint`, or a one-line error that says what
    is wrong with it and where the one before it is."""
    import keras

    from keras_spactor.cli_callbacks import previous_path

    try:
        return keras.saving.load_model(checkpoint)
    except Exception as error:
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        previous = previous_path(checkpoint)
        hint = (
            f"; the checkpoint before it is intact: move {previous} to "
            f"{checkpoint} and resume again"
            if file_paths.exists(previous)
            else ""
        )
        fail(
            f"--resume: {checkpoint} cannot be read, it is truncated or "
            f"damaged ({type(error).__name__}: {reason}){hint}"
        )


def is_data_read_error(error):
    """Whether `fit` failed reading its input: a file that vanished or
    turned unreadable surfaces as an `OSError` or, through tf.data, as a
    TensorFlow `OpError` of the input iterator's `IteratorGetNext` op."""
    import tensorflow as tf

    if isinstance(error, OSError):
        return True
    return isinstance(error, tf.errors.OpError) and (
        "IteratorGetNext" in str(error)
    )


def data_error_text(error):
    """The line of a data error that names the cause (and the file)."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    line = next((x for x in lines if "Error" in x and "/" in x), lines[0])
    # TensorFlow prefixes the op's name in double braces, and an error
    # raised in a dataset function with where in the pipeline it was.
    line = re.sub(r"\{\{.*?\}\}\s*", "", line)
    line = re.sub(r"Error in user-defined .*?Iterator::\S*: ", "", line)
    return line.strip()[:300]


def make_optimizer(args):
    import keras

    from keras_spactor.schedules import InverseSquareRootSchedule

    rate = args.learning_rate
    if rate is None:
        rate = 0.01 if args.optimizer == "adafactor" else 1e-3
    if args.schedule == "rsqrt":
        rate = InverseSquareRootSchedule(rate, args.warmup_steps)
    elif args.schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(
            0.0,
            args.steps,
            warmup_target=rate,
            warmup_steps=args.warmup_steps,
        )
    if args.optimizer == "adafactor":
        return keras.optimizers.Adafactor(learning_rate=rate)
    return keras.optimizers.AdamW(learning_rate=rate, weight_decay=0.01)


def distribution_scope(args):
    """Set up --distribution; returns the scope to build the model in."""
    import contextlib

    from keras_spactor import distribution

    if args.distribution == "none":
        return contextlib.nullcontext()
    try:
        return distribution.distribute(
            args.batch_size, args.distribution, args.model_shards
        )
    except ValueError as error:
        fail(str(error))


def describe_devices():
    """The accelerators the backend trains on, e.g. `"8 x TPU v5 lite"`."""
    import collections

    import keras

    if keras.backend.backend() == "jax":
        import jax

        kinds = [device.device_kind for device in jax.devices()]
    else:
        import tensorflow as tf

        kinds = [
            device.device_type
            for device in tf.config.list_logical_devices()
            if device.device_type != "CPU"
        ] or ["CPU"]
    counts = collections.Counter(kinds)
    return ", ".join(f"{n} x {kind}" for kind, n in counts.items())


def describe_tau(tau, steps):
    """What the resolved switch step means for a run of `steps` steps."""
    run = f"tau {tau} of {steps} step{'s' if steps != 1 else ''}"
    if tau == 0:
        return f"{run} (plain span corruption)"
    if tau >= steps:
        return f"{run} (hybrid throughout)"
    return f"{run} (hybrid for steps 0-{tau - 1}, then span corruption)"


def startup_line(args, model, tau, done):
    """One line: backend, devices, preset, parameters, tau, data."""
    import keras

    def millions(n):
        return f"{n / 1e6:.1f}M"

    auxiliary = sum(layer.count_params() for layer in model.auxiliary_layers)
    line = (
        f"keras-spactor pretrain: backend {keras.backend.backend()} on "
        f"{describe_devices()}; preset {args.preset}, "
        f"{millions(model.count_params())} parameters (T5 "
        f"{millions(model.backbone.count_params())}, generator and heads "
        f"{millions(auxiliary)}); {describe_tau(tau, args.steps)}; data "
        f"{args.data}"
    )
    if done:
        line += f"; resuming at step {done}"
    return line


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

    if args.batch_size % count:
        fail(
            f"--batch-size {args.batch_size} is not divisible by the {count} "
            "processes"
        )
    if args.distribution == "none":
        fail("a multi-process run needs --distribution data or model")
    local = jax.local_device_count()
    if args.distribution == "model" and local % args.model_shards:
        # Each process feeds its own rows: the model axis must lie within
        # one process, the data axis across them.
        fail(
            f"--model-shards {args.model_shards} must divide the {local} "
            "devices of each process in a multi-process run"
        )


def this_process_rows(batches):
    """Each global batch's rows of this process (all of a single one)."""
    from keras_spactor import distribution

    if distribution.process_count() == 1:
        yield from batches
        return
    for batch in batches:
        yield distribution.process_rows(batch)


def pretrain(args):
    index, count = 0, 1
    if is_multi_process(args):
        index, count = join_processes(args)
    chief = index == 0
    check_arguments(args, chief)
    if is_multi_process(args):
        check_multi_process(args, count)
    import keras

    import keras_spactor
    from keras_spactor import data
    from keras_spactor.callbacks.tau_scheduler import format_tau
    from keras_spactor.cli_callbacks import AtomicCheckpoint
    from keras_spactor.cli_callbacks import CheckpointWriteError
    from keras_spactor.cli_callbacks import RunLogger
    from keras_spactor.cli_callbacks import StageProgbarLogger
    from keras_spactor.cli_callbacks import StopOnNonFiniteLoss
    from keras_spactor.run_config import run_config
    from keras_spactor.run_config import write_run_config

    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    keras.utils.set_random_seed(args.seed)
    if chief:
        try:  # e.g. a bucket that does not exist
            file_paths.makedirs(args.output_dir)
        except OSError as error:
            fail(f"--output-dir: cannot create it ({error})")
    checkpoint = os.path.join(args.output_dir, "checkpoint.keras")
    # JAX: sets the global distribution; TF: the strategy's scope, in which
    # the model and (in compile) its optimizer must be built.
    scope = distribution_scope(args)
    if keras.distribution.distribution() is not None:
        # Each process hands `fit` its own rows (`process_rows` below).
        keras.distribution.distribution().auto_shard_dataset = False
    tokenizer = None
    if args.vocabulary is None:
        # A transformers T5 (hf://... or its folder) brings its own.
        tokenizer = checkpoint_tokenizer(args.preset)
    if tokenizer is None:
        try:
            tokenizer = data.load_vocabulary(args.vocabulary)
        except OSError as error:  # e.g. a gs:// file that is not there
            fail(f"--vocabulary: {error}")
    with scope:
        if args.resume:
            model = load_checkpoint(checkpoint)
            model.tokenizer = tokenizer
        else:
            model = keras_spactor.SpacTorT5.from_preset(
                args.preset, tokenizer=tokenizer, seed=args.seed
            )
            model.compile(
                optimizer=make_optimizer(args),
                steps_per_execution=args.steps_per_execution,
            )
    if args.distribution == "model":
        from keras_spactor.distribution import check_layout_map

        try:
            check_layout_map(keras.distribution.distribution(), model)
        except ValueError as error:
            fail(str(error))
    done = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    if done >= args.steps:
        fail(f"the run in {args.output_dir} already finished {done} steps")
    dataset = data.pretraining_dataset(
        args.data,
        tokenizer,
        batch_size=args.batch_size,
        inputs_length=args.inputs_length,
        seed=args.seed,
    )
    saved_tau_step = getattr(args, "saved_tau_step", None)
    if args.resume and saved_tau_step is not None:
        # The switch step of the run, even if --steps was raised.
        tau = keras_spactor.callbacks.TauScheduler(saved_tau_step)
    else:
        tau = keras_spactor.callbacks.TauScheduler(
            format_tau(args.tau), total_steps=args.steps
        )
    if chief:
        write_run_config(args.output_dir, run_config(args, tau.resolve()))
    # Epochs are checkpoint intervals: a divisor of --steps, so none
    # overshoots, and of the steps done, so a resume starts on an epoch.
    per_epoch = math.gcd(math.gcd(args.steps, args.checkpoint_every), done)
    epochs = -(-args.steps // per_epoch)
    # The data position is saved with each checkpoint: a resume restores
    # it instead of reading the stream up to `done` again.
    batches = data.ResumableBatches(
        dataset,
        os.path.join(args.output_dir, "data_state"),
        per_epoch,
        save=chief,
    )
    if args.resume:
        try:
            replayed = batches.resume(done)
        except ValueError as error:
            fail(f"--resume: {error}")
        if replayed:
            print(
                f"keras-spactor: no saved data position at step {done}: "
                f"{replayed} batches were read again to reach it",
                file=sys.stderr,
            )
    start = time.time()
    peak = args.peak_tflops
    progress = keras_spactor.callbacks.TrainingProgress.for_model(
        model,
        args.batch_size,
        args.inputs_length,
        peak_flops_per_second=peak * 1e12 if peak else None,
    )
    logger = RunLogger(args, progress)
    print(startup_line(args, model, tau.resolve(), done), flush=True)
    guard = StopOnNonFiniteLoss()
    if chief:
        saver = AtomicCheckpoint(
            checkpoint, before_save=batches.save_position, on_saved=batches.keep
        )
    else:
        # Saving runs collectives, so every process saves; the others'
        # copies go to a scratch folder, deleted at the end.
        scratch = tempfile.mkdtemp(prefix="keras-spactor-process-")
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        saver = AtomicCheckpoint(os.path.join(scratch, "checkpoint.keras"))
    if args.resume:
        saver.saved_steps.append(done)
    callbacks = [
        tau,
        progress,
        logger,
        StageProgbarLogger(),  # after `progress`, whose logs it shows
        guard,
        saver,
    ]
    if chief:
        callbacks.insert(
            4,
            keras.callbacks.TensorBoard(
                os.path.join(args.output_dir, "logs"), update_freq=10
            ),
        )
    try:
        model.fit(
            this_process_rows(batches.batches()),
            epochs=epochs,
            initial_epoch=done // per_epoch,
            steps_per_epoch=per_epoch,
            shuffle=False,  # `pretraining_dataset` shuffles
            callbacks=callbacks,
            verbose=2 if not sys.stdout.isatty() else 1,
        )
    except CheckpointWriteError as error:
        fail(str(error))
    except Exception as error:
        if not is_data_read_error(error):
            raise
        # The batch that failed never ran: the state is that of the last
        # whole step, so save it before stopping.
        step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
        # The input iterator just failed: its state is not saved (a resume
        # restores an earlier one and reads the batches since).
        saver.before_save = None
        if guard.bad_step is None and step != saver.saved_step:
            try:
                saver.save(step, model)
            except CheckpointWriteError as write_error:
                fail(f"reading --data failed ({error}); also {write_error}")
        fail(
            f"reading --data failed at step {step} ({data_error_text(error)}); "
            f"the run is checkpointed at step {saver.saved_step} in "
            f"{checkpoint}: fix the data, then --resume"
        )
    if guard.bad_step is not None:
        # Nothing is written from a broken state: no checkpoint, no preset.
        last = saver.saved_step if saver.saved_step is not None else done
        good = (
            f"the last good checkpoint is {checkpoint} (step {last})"
            if file_paths.exists(checkpoint)
            else "no checkpoint was written"
        )
        fail(
            f"the loss became non-finite at step {guard.bad_step}; training "
            f"stopped and {good}. A resume replays the same batches; a new "
            "run with a lower --learning-rate is the usual cure."
        )
    summary = logger.summary(model, tau.resolved_tau, time.time() - start)
    if chief:
        if saver.saved_step is not None:
            batches.discard_after(saver.saved_step)
        model.save_to_preset(os.path.join(args.output_dir, "preset"))
        summary_file = os.path.join(args.output_dir, "summary.json")
        with file_paths.open_file(summary_file, "w") as f:
            f.write(json.dumps(summary, indent=2))
    else:
        model.save_to_preset(os.path.join(scratch, "preset"))
        shutil.rmtree(scratch, ignore_errors=True)
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


def checkpoint_tokenizer(preset):
    """The tokenizer of a transformers T5 checkpoint, else `None`."""
    from keras_spactor.interchange import transformers_import

    directory = transformers_import.transformers_checkpoint_directory(preset)
    if directory is None:
        return None
    return transformers_import.load_transformers_tokenizer(directory)


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
    from keras_spactor import finetune
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
            from keras_spactor.run_config import explicit_options

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
