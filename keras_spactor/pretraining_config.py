"""A pre-training run's settings, checked, and saved next to its checkpoint.

`PretrainingRun` writes `config.json` in the run's `output_dir`: every
setting, the resolved switch step and the versions that ran it. A resume
reads it back: settings that would change the data stream, the model or
the curriculum (`FIXED_FOR_A_RUN`) must match it; `steps` may change
(raise it to extend the run); the switch stays at the step saved.
"""

import dataclasses
import json
import os
import platform
import re
import time

from keras_spactor import file_paths
from keras_spactor.errors import ConfigError

RUN_CONFIG_FILE = "config.json"
DEFAULT_OUTPUT_DIR = os.path.join("runs", "spactor")
OPTIMIZERS = ("adafactor", "adamw")
SCHEDULES = ("rsqrt", "cosine", "constant")
DISTRIBUTIONS = ("none", "data", "model")

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


@dataclasses.dataclass(frozen=True)
class PretrainingConfig:
    """Everything a SpacTor pre-training run needs, checked when made.

    The fields are those of `keras-spactor pretrain`'s options (see its
    `--help` and the README); a bad value raises `ConfigError` naming the
    field. Checks that need files, the network or the backend wait for
    `check_runnable` (the run calls it before any long work). It is
    frozen: `dataclasses.replace(config, steps=400)` makes a changed copy,
    checked again.

    Args:
        preset: a SpacTor preset name, a preset directory, a keras-hub T5
            preset (`t5_1.1_base`) or a transformers T5 (`hf://...`).
        data: the training text (a spec of `keras_spactor.data.text_dataset`),
            or a `.npz` file of batches built beforehand
            (`keras_spactor.data.array_batches`, read without TensorFlow;
            batch `k` is the `k`-th `batch_size` rows, so its position is
            the step).
        vocabulary: a SentencePiece model file or keras-hub preset name;
            `None` for the default (a transformers T5's own, else the one
            trained on the embedded corpus).
        output_dir: the run's folder (local or `gs://`).
        steps: int. Optimizer steps of the run.
        tau: the stage switch: a step (int) or a percentage of `steps`
            (`"25%"`); 0 is plain span corruption, `None` hybrid throughout.
        batch_size: int. Examples per step (across all devices).
        inputs_length: int. Encoder length.
        optimizer: `"adamw"` or `"adafactor"`.
        learning_rate: float. Peak rate; `None`: 0.01 for Adafactor, 1e-3
            for AdamW.
        schedule: `"constant"`, `"rsqrt"` (T5's) or `"cosine"`.
        warmup_steps: int. Warmup of `rsqrt` and `cosine`.
        seed: int. Seeds the model, the masks and the data order.
        mixed_precision: bool. bfloat16 compute (GPU/TPU).
        steps_per_execution: int. Steps per compiled call.
        peak_tflops: float. Peak TFLOP/s of all devices, to log `mfu`.
        distribution: `"none"`, `"data"` or `"model"`.
        model_shards: int. Size of the model axis for `"model"`.
        checkpoint_every: int. Steps between checkpoints (and log epochs).
        evaluate_every: int. Steps between held-out evaluations, logged to
            TensorBoard (`logs/validation`); `None` for none.
        validation_data: the held-out text (or a `.npz` of batches);
            `None`: the validation split of `data` (a builtin corpus, TFDS,
            an `hf:` pattern with `train` in its file names, folders).
        validation_steps: int. Held-out batches per evaluation.

    Example:
    ```python
    config = keras_spactor.PretrainingConfig(
        preset="spactor_t5_tiny", steps=200, tau="50%",
        output_dir="runs/tiny",
    )
    config.to_dict()["arguments"]["steps"]  # 200
    ```
    """

    preset: str = "spactor_t5_tiny"
    data: str = "builtin:python-docs"
    vocabulary: str | None = None
    output_dir: str = DEFAULT_OUTPUT_DIR
    steps: int = 120
    tau: int | str | None = "50%"
    batch_size: int = 8
    inputs_length: int = 128
    optimizer: str = "adamw"
    learning_rate: float | None = None
    schedule: str = "constant"
    warmup_steps: int = 10
    seed: int = 0
    mixed_precision: bool = False
    steps_per_execution: int = 1
    peak_tflops: float | None = None
    distribution: str = "none"
    model_shards: int | None = None
    checkpoint_every: int = 40
    evaluate_every: int | None = None
    validation_data: str | None = None
    validation_steps: int = 20

    def __post_init__(self):
        self._check_types()
        self._check_values()

    def _check_types(self):
        for name in ("preset", "data", "output_dir"):
            _require(name, getattr(self, name), str, "a string")
            if not getattr(self, name):
                raise ConfigError(f"`{name}` is empty", name)
        for name in ("vocabulary", "validation_data"):
            if getattr(self, name) is not None:
                _require(name, getattr(self, name), str, "a string")
        for name in (
            "steps",
            "batch_size",
            "inputs_length",
            "steps_per_execution",
            "checkpoint_every",
            "validation_steps",
        ):
            _positive_int(name, getattr(self, name))
        for name in ("model_shards", "evaluate_every"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        _require("seed", self.seed, int, "an int")
        _require("warmup_steps", self.warmup_steps, int, "an int")
        if self.warmup_steps < 0:
            raise ConfigError(
                f"`warmup_steps` must be >= 0, got {self.warmup_steps}",
                "warmup_steps",
            )
        _require("mixed_precision", self.mixed_precision, bool, "True/False")
        for name in ("learning_rate", "peak_tflops"):
            value = getattr(self, name)
            if value is not None:
                _require(name, value, (int, float), "a number")
                if not value > 0:
                    raise ConfigError(
                        f"`{name}` must be positive, got {value}", name
                    )

    def _check_values(self):
        from keras_spactor.callbacks.tau_scheduler import format_tau
        from keras_spactor.callbacks.tau_scheduler import parse_tau
        from keras_spactor.models.spactor_presets import SPACTOR_PRESETS

        for name, choices in (
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("distribution", DISTRIBUTIONS),
        ):
            if getattr(self, name) not in choices:
                raise ConfigError(
                    f"`{name}` must be one of {', '.join(choices)}; got "
                    f"{getattr(self, name)!r}",
                    name,
                )
        try:  # one spelling of each value: 3000, or "25%"
            tau = format_tau(parse_tau(self.tau))
        except ValueError as error:  # "tau must be ..."
            message = re.sub(r"^tau\b", "`tau`", str(error))
            raise ConfigError(message, "tau") from None
        object.__setattr__(self, "tau", tau)  # frozen
        if isinstance(self.tau, int) and self.tau > self.steps:
            raise ConfigError(
                f"`tau` {self.tau} is larger than the run (`steps` "
                f"{self.steps})",
                "tau",
            )
        if (
            self.preset not in SPACTOR_PRESETS
            and not os.path.isdir(self.preset)
            and not self.preset.startswith(("t5", "hf://"))
        ):
            raise ConfigError(
                f"unknown `preset` {self.preset!r}; valid presets: "
                f"{', '.join(sorted(SPACTOR_PRESETS))} (or a preset "
                "directory, a keras-hub T5 preset such as t5_1.1_base, or "
                "a transformers T5: hf://owner/name or its folder)",
                "preset",
            )
        if self.model_shards and self.distribution != "model":
            raise ConfigError(
                "`model_shards` needs `distribution` model", "model_shards"
            )
        if self.distribution == "model" and not self.model_shards:
            raise ConfigError(
                "`distribution` model needs `model_shards` N", "model_shards"
            )

    def tau_step(self):
        """The switch step `tau` resolves to in a run of `steps` steps."""
        from keras_spactor.callbacks.tau_scheduler import TauScheduler

        return TauScheduler(self.tau, total_steps=self.steps).resolve()

    def check_runnable(self):
        """Checks what the run needs of this machine, before any long work:
        the output folder's file system, the text sources and the backend.

        Raises:
            ConfigError: naming the field (e.g. `data` for a file that is
                not there).
        """
        import keras

        if file_paths.is_remote(self.output_dir):
            try:  # an unknown scheme, no credentials, ...
                file_paths.exists(self.output_dir)
            except OSError as error:
                raise ConfigError(f"`output_dir`: {error}", "output_dir")
        self._check_data("data", self.data, steps=self.steps)
        if self.evaluate_every:
            self._check_validation_data()
        if self.distribution == "model" and keras.backend.backend() != "jax":
            raise ConfigError(
                "model parallelism needs the JAX backend (KERAS_BACKEND=jax);"
                " on TensorFlow use `distribution` data",
                "distribution",
            )

    def _check_data(self, field, source, steps, split="train"):
        """`ConfigError` naming `field` unless `source` can be read."""
        from keras_spactor.data.array_batches import check_array_batches
        from keras_spactor.data.array_batches import is_array_batches

        try:
            if is_array_batches(source):
                check_array_batches(
                    source, self.batch_size, steps, self.inputs_length
                )
            else:  # text: read with tf.data
                from keras_spactor.data.sources import check_source

                check_source(source, split=split)
        except (ImportError, OSError, ValueError) as error:
            raise ConfigError(f"`{field}`: {error}", field) from None

    def _check_validation_data(self):
        from keras_spactor.data.array_batches import is_array_batches

        if self.validation_data is None:
            if is_array_batches(self.data):
                raise ConfigError(
                    f"`data` {self.data} holds training batches only: name "
                    "the held-out batches with `validation_data`",
                    "validation_data",
                )
            from keras_spactor.data.sources import has_splits

            if not has_splits(self.data):
                raise ConfigError(
                    f"`data` {self.data} has no validation split (files "
                    "and globs are read whatever the split): name the "
                    "held-out text with `validation_data`",
                    "validation_data",
                )
        self._check_data(
            "validation_data",
            self.validation_source(),
            steps=1,  # evaluations read up to `validation_steps`
            split="validation",
        )

    def validation_source(self):
        """The held-out text: `validation_data`, else `data` (whose
        validation split is read)."""
        if self.validation_data is not None:
            return self.validation_data
        return self.data

    def check_processes(self, count, local_devices):
        """What a run of `count` processes of `local_devices` devices each
        needs of these settings.

        Raises:
            ConfigError: naming the field.
        """
        if self.batch_size % count:
            raise ConfigError(
                f"`batch_size` {self.batch_size} is not divisible by the "
                f"{count} processes",
                "batch_size",
            )
        if self.distribution == "none":
            raise ConfigError(
                "a multi-process run needs `distribution` data or model",
                "distribution",
            )
        if self.distribution == "model" and local_devices % self.model_shards:
            # Each process feeds its own rows: the model axis must lie
            # within one process, the data axis across them.
            raise ConfigError(
                f"`model_shards` {self.model_shards} must divide the "
                f"{local_devices} devices of each process in a "
                "multi-process run",
                "model_shards",
            )
        if self.evaluate_every:
            raise ConfigError(
                "`evaluate_every` is not supported in a multi-process run",
                "evaluate_every",
            )

    def resume_mismatches(self, saved):
        """The fixed settings in which this config contradicts a saved run.

        Args:
            saved: the `PretrainingConfig` of the run to resume.

        Returns:
            A dict from each field that differs to a line that names it in
            backticks (empty when the resume is consistent).
        """
        return {
            name: f"`{name}` {getattr(self, name)!r} differs from the run's "
            f"{getattr(saved, name)!r}"
            for name in FIXED_FOR_A_RUN
            if getattr(self, name) != getattr(saved, name)
        }

    def to_dict(self, tau_step=None):
        """What `config.json` holds: every setting (`"arguments"`), the
        switch step (`"tau_step"`, default: `tau_step()`), the versions
        that ran it and the time it was written.

        Returns:
            A JSON-serialisable dict; `from_dict` reads it back.
        """
        return {
            "arguments": dataclasses.asdict(self),
            "tau_step": self.tau_step() if tau_step is None else tau_step,
            "versions": _versions(),
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    @classmethod
    def from_dict(cls, config):
        """The config of a `to_dict` dict (or of its `"arguments"` alone).

        A `config.json` of an earlier version is read too: settings it
        lacks take their defaults, and its `tau` may be the fraction a
        percentage was parsed to (0.5 for `"50%"`).

        Raises:
            ConfigError: for a setting that does not exist or is invalid.
        """
        from keras_spactor.callbacks.tau_scheduler import format_tau

        arguments = dict(config.get("arguments", config))
        names = {field.name for field in dataclasses.fields(cls)}
        for name in arguments:
            if name not in names:
                raise ConfigError(
                    f"`{name}` is not a setting of a pre-training run", name
                )
        if isinstance(arguments.get("tau"), float):
            arguments["tau"] = format_tau(arguments["tau"])
        return cls(**arguments)

    @classmethod
    def from_output_dir(cls, output_dir):
        """The config saved in a run's folder, e.g. to resume it.

        Example:
        ```python
        config = PretrainingConfig.from_output_dir("runs/tiny")
        config = dataclasses.replace(config, steps=400)  # extend the run
        PretrainingRun(config, resume=True).run()
        ```
        """
        try:
            saved = read_run_config(output_dir)
        except ValueError as error:
            raise ConfigError(f"`output_dir`: {error}", "output_dir")
        if saved is None:
            raise ConfigError(
                f"`output_dir` {output_dir} holds no {RUN_CONFIG_FILE}",
                "output_dir",
            )
        return cls.from_dict(
            {"arguments": dict(saved["arguments"], output_dir=output_dir)}
        )


def _require(name, value, types, description):
    # `True` is an int to Python, never a step count or a rate here.
    if isinstance(value, bool) != (types is bool) or not isinstance(
        value, types
    ):
        raise ConfigError(
            f"`{name}` must be {description}, got {value!r}", name
        )


def _positive_int(name, value):
    _require(name, value, int, "a positive int")
    if value <= 0:
        raise ConfigError(f"`{name}` must be a positive int, got {value}", name)


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
