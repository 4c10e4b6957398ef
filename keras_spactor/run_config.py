"""A pre-training run's configuration, saved next to its checkpoint.

`keras-spactor pretrain` writes `config.json` in `--output-dir`: every
argument, the resolved switch step and the versions that ran it. `--resume`
reads it back: arguments that would change the data stream, the model or
the curriculum must match it or be left out (they are then taken from it);
`--steps` may change (raise it to extend the run); the switch stays at
the step saved.
"""

import json
import platform
import time

from keras_spactor import file_paths

RUN_CONFIG_FILE = "config.json"

# Changing one of these mid-run would silently continue on another data
# stream, model or curriculum.
FIXED_FOR_A_RUN = (
    "preset",
    "data",
    "vocabulary",
    "batch_size",
    "inputs_length",
    "seed",
    "tau",
    "optimizer",
    "learning_rate",
    "schedule",
    "warmup_steps",
    "mixed_precision",
    "steps_per_execution",
)
# Not saved: they describe this invocation, not the run.
_NOT_SAVED = (
    "command",
    "resume",
    "verbose",
    "explicit",
    "saved_tau_step",
    # Each host of a multi-process run has its own.
    "multi_process",
    "coordinator_address",
    "num_processes",
    "process_id",
)


def explicit_options(argv):
    """The argument names given on the command line (`--batch-size 8` and
    `--batch-size=8` give `batch_size`); the parser must not accept
    abbreviations."""
    names = set()
    for token in argv:
        if token.startswith("--") and len(token) > 2:
            names.add(token[2:].split("=", 1)[0].replace("-", "_"))
    return names


def _versions():
    import keras
    import keras_hub

    import keras_spactor

    versions = {
        "keras_spactor": keras_spactor.__version__,
        "keras": keras.__version__,
        "keras_hub": keras_hub.__version__,
        "backend": keras.backend.backend(),
        "python": platform.python_version(),
    }
    for name in ("tensorflow", "jax"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    return versions


def run_config(args, tau_step):
    """The dict `config.json` holds for `args` (an argparse namespace).

    Args:
        args: the parsed `pretrain` arguments.
        tau_step: int or `None`. The resolved switch step.

    Returns:
        A JSON-serialisable dict.
    """
    arguments = {
        key: value
        for key, value in sorted(vars(args).items())
        if key not in _NOT_SAVED
    }
    return {
        "arguments": arguments,
        "tau_step": tau_step,
        "versions": _versions(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_run_config(output_dir, config):
    """Writes `config.json` atomically (a temporary file, then a rename;
    `output_dir` may be a `gs://` URL)."""
    path = file_paths.join(output_dir, RUN_CONFIG_FILE)
    temporary = path + ".partial"
    with file_paths.open_file(temporary, "w") as f:
        f.write(json.dumps(config, indent=2))
    file_paths.replace(temporary, path)


def read_run_config(output_dir):
    """The saved `config.json` of a run; `None` for a run that predates it;
    a `ValueError` when it cannot be read."""
    path = file_paths.join(output_dir, RUN_CONFIG_FILE)
    if file_paths.is_remote(path) and not file_paths.exists(path):
        return None
    try:
        with file_paths.open_file(path) as f:
            config = json.loads(f.read())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from None
    if "arguments" not in config:
        raise ValueError(f"{path} holds no 'arguments'")
    return config


def reconcile_resume(args, saved, explicit):
    """Checks a resume's arguments against the saved run and fills in the
    ones left out.

    Args:
        args: the parsed `pretrain` arguments; updated in place.
        saved: the dict `read_run_config` returned.
        explicit: the names given on the command line.

    Returns:
        A list of one-line mismatch messages (empty when the resume is
        consistent).
    """
    arguments = saved["arguments"]
    mismatches = []
    for name in FIXED_FOR_A_RUN:
        if name in explicit and name in arguments:
            if getattr(args, name) != arguments[name]:
                flag = "--" + name.replace("_", "-")
                mismatches.append(
                    f"{flag} {getattr(args, name)!r} differs from the run's "
                    f"{arguments[name]!r}"
                )
    # Everything left out is the run's (--checkpoint-every, --steps, ...).
    for name, value in arguments.items():
        if name not in explicit and name != "output_dir":
            setattr(args, name, value)
    return mismatches
