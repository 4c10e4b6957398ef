"""`PretrainingRun`: a whole SpacTor pre-training run, resumable."""

import atexit
import contextlib
import importlib.util
import itertools
import json
import math
import os
import shutil
import sys
import tempfile
import time

import keras

from keras_spactor import distribution
from keras_spactor import file_paths
from keras_spactor.callbacks.atomic_checkpoint import AtomicCheckpoint
from keras_spactor.callbacks.atomic_checkpoint import previous_path
from keras_spactor.callbacks.run_logger import RunLogger
from keras_spactor.callbacks.stage_progbar_logger import StageProgbarLogger
from keras_spactor.callbacks.stop_on_non_finite_loss import StopOnNonFiniteLoss
from keras_spactor.callbacks.tau_scheduler import TauScheduler
from keras_spactor.callbacks.training_progress import TrainingProgress
from keras_spactor.errors import CheckpointReadError
from keras_spactor.errors import CheckpointWriteError
from keras_spactor.errors import ConfigError
from keras_spactor.errors import DataReadError
from keras_spactor.errors import NonFiniteLossError
from keras_spactor.errors import RunFinishedError
from keras_spactor.pretraining_config import PretrainingConfig
from keras_spactor.pretraining_config import read_run_config
from keras_spactor.pretraining_config import write_run_config
from keras_spactor.run_messages import data_error_text
from keras_spactor.run_messages import is_data_read_error
from keras_spactor.run_messages import startup_line

CHECKPOINT_FILE = "checkpoint.keras"


class PretrainingRun:
    """A SpacTor pre-training run: from a `PretrainingConfig` to a trained
    model, a keras-hub preset and a summary, resumable at any checkpoint.

    `run()` builds the model (or loads the checkpoint of `output_dir` when
    resuming, with the data stream's saved position and the switch step of
    the run), trains it for `config.steps` steps and writes, in
    `output_dir`: `config.json`, `checkpoint.keras` every `checkpoint_every`
    steps (atomically, the one before kept as `checkpoint.previous.keras`),
    `data_state/`, TensorBoard `logs/` (with `logs/validation` when
    `evaluate_every` is set), `preset/` and `summary.json`. It stops with a
    `RunError` whose message is one line saying what to do: `ConfigError`,
    `CheckpointReadError`, `CheckpointWriteError`, `DataReadError` (after
    checkpointing the last whole step), `NonFiniteLossError` (nothing saved
    from the broken state) or `RunFinishedError`.

    In a multi-process JAX run (joined first with
    `keras_spactor.distribution.initialize_processes`), every process runs
    the same config; process 0 writes the files, and the others save their
    copies (saving runs collectives) to a scratch folder they delete.

    Args:
        config: a `PretrainingConfig`.
        resume: bool. Continue the run in `config.output_dir` from its last
            checkpoint; the settings that fix the run must be those of its
            `config.json`.

    Example:
    ```python
    config = keras_spactor.PretrainingConfig(steps=200, output_dir="runs/x")
    run = keras_spactor.PretrainingRun(config)
    summary = run.run()  # also in runs/x/summary.json
    run.model  # the trained SpacTorT5
    # After an interruption, from the last checkpoint:
    keras_spactor.PretrainingRun(config, resume=True).run()
    ```
    """

    def __init__(self, config, resume=False):
        if not isinstance(config, PretrainingConfig):
            raise TypeError(
                f"config must be a PretrainingConfig, got {type(config)}"
            )
        self.config = config
        self.resume = resume
        self.model = None
        self.summary = None
        self.evaluation = None

    @property
    def checkpoint_path(self):
        return os.path.join(self.config.output_dir, CHECKPOINT_FILE)

    def run(self):
        """Trains to `config.steps` steps; returns the summary dict.

        Raises:
            RunError: one of its subclasses, with a one-line message.
        """
        chief = distribution.is_chief()
        saved_tau_step = self._check(chief)
        policy = keras.mixed_precision.global_policy()
        if self.config.mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_bfloat16")
        try:
            self.summary = self._run(chief, saved_tau_step)
        finally:  # the model keeps its layers' policies
            keras.mixed_precision.set_global_policy(policy)
        return self.summary

    def _run(self, chief, saved_tau_step):
        config = self.config
        keras.utils.set_random_seed(config.seed)
        if chief:
            try:  # e.g. a bucket that does not exist
                file_paths.makedirs(config.output_dir)
            except OSError as error:
                raise ConfigError(
                    f"`output_dir`: cannot create it ({error})", "output_dir"
                ) from None
        scope = self._distribution_scope()
        if keras.distribution.distribution() is not None:
            # Each process hands `fit` its own rows (`process_rows` below).
            keras.distribution.distribution().auto_shard_dataset = False
        tokenizer = self._tokenizer()
        with scope:
            self.model = self._model(tokenizer)
        if config.distribution == "model":
            try:
                distribution.check_layout_map(
                    keras.distribution.distribution(), self.model
                )
            except ValueError as error:
                raise ConfigError(str(error), "model_shards") from None
        done = _steps_done(self.model)
        if done >= config.steps:
            raise RunFinishedError(
                f"the run in {config.output_dir} already finished {done} steps"
            )
        if saved_tau_step is not None:
            # The switch step of the run, even if `steps` was raised.
            tau = TauScheduler(saved_tau_step)
        else:
            tau = TauScheduler(config.tau, total_steps=config.steps)
        if chief:
            write_run_config(
                config.output_dir, config.to_dict(tau_step=tau.resolve())
            )
        return self._fit(tau, done, chief)

    def _check(self, chief):
        """Every cheap check before any long work; returns the saved
        switch step of a resumed run (or `None`)."""
        config = self.config
        config.check_runnable()
        if distribution.process_count() > 1:
            import jax

            config.check_processes(
                distribution.process_count(), jax.local_device_count()
            )
        if not self.resume:
            if chief and file_paths.exists(config.output_dir):
                if file_paths.listdir(config.output_dir):
                    raise ConfigError(
                        f"{config.output_dir} already holds a run; pass "
                        "`resume` to continue it or choose another "
                        "`output_dir`",
                        "output_dir",
                    )
            return None
        if not file_paths.exists(self.checkpoint_path):
            raise ConfigError(
                "`resume`: there is no checkpoint to resume at "
                f"{self.checkpoint_path}",
                "resume",
            )
        return self._check_saved_run()

    def _check_saved_run(self):
        """The resumed run's saved settings must be this config's."""
        config = self.config
        try:
            saved = read_run_config(config.output_dir)
        except ValueError as error:
            raise ConfigError(f"`resume`: {error}", "resume") from None
        if saved is None:
            _note(
                f"{config.output_dir} has no config.json (a run from an "
                "earlier version): resuming with the options given, "
                "unchecked."
            )
            return None
        try:
            saved_config = PretrainingConfig.from_dict(saved)
        except ConfigError as error:
            raise ConfigError(
                f"`resume`: the config.json in {config.output_dir}: {error}",
                "resume",
            ) from None
        mismatches = config.resume_mismatches(saved_config)
        if mismatches:
            raise ConfigError(
                f"`resume`: the run in {config.output_dir} was started with "
                "other settings (those of its config.json):\n  "
                + "\n  ".join(mismatches.values()),
                next(iter(mismatches)),
            )
        return saved.get("tau_step")

    def _distribution_scope(self):
        """Sets up `config.distribution`; the scope to build the model in."""
        config = self.config
        if config.distribution == "none":
            return contextlib.nullcontext()
        try:
            return distribution.distribute(
                config.batch_size, config.distribution, config.model_shards
            )
        except ValueError as error:
            raise ConfigError(str(error), "distribution") from None

    def _tokenizer(self):
        """The run's tokenizer: `config.vocabulary`, else a transformers
        T5's own, else the default vocabulary."""
        from keras_spactor import data

        if self.config.vocabulary is None:
            tokenizer = checkpoint_tokenizer(self.config.preset)
            if tokenizer is not None:
                return tokenizer
        try:
            return data.load_vocabulary(self.config.vocabulary)
        except OSError as error:  # e.g. a gs:// file that is not there
            raise ConfigError(f"`vocabulary`: {error}", "vocabulary") from None

    def _model(self, tokenizer):
        """The compiled model: from the checkpoint, or a new one."""
        from keras_spactor.models import SpacTorT5
        from keras_spactor.models import SpacTorT5Preprocessor

        preprocessor = SpacTorT5Preprocessor(
            tokenizer, inputs_length=self.config.inputs_length
        )
        if self.resume:
            model = self._load_checkpoint()
            if model.preprocessor is None:  # saved before models held one
                model.preprocessor = preprocessor
            return model
        model = SpacTorT5.from_preset(
            self.config.preset,
            preprocessor=preprocessor,
            seed=self.config.seed,
        )
        model.compile(
            optimizer=make_optimizer(self.config),
            steps_per_execution=self.config.steps_per_execution,
        )
        return model

    def _load_checkpoint(self):
        """The model saved in the checkpoint, or a one-line error that says
        what is wrong with it and where the one before it is."""
        checkpoint = self.checkpoint_path
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
            raise CheckpointReadError(
                f"`resume`: {checkpoint} cannot be read, it is truncated or "
                f"damaged ({type(error).__name__}: {reason}){hint}"
            ) from None

    def _batches(self, done, per_epoch, chief):
        """The training batches, at step `done`: `config.data`'s text
        through `tf.data` with its position saved next to each checkpoint
        (a resume restores it instead of reading the stream up to `done`
        again), or its array batches, whose position is the step."""
        from keras_spactor import data
        from keras_spactor.data.array_batches import ArrayBatches
        from keras_spactor.data.array_batches import is_array_batches

        config = self.config
        if is_array_batches(config.data):
            batches = ArrayBatches(
                config.data, config.batch_size, self.model.preprocessor
            )
        else:
            dataset = data.pretraining_dataset(
                config.data,
                self.model.preprocessor,
                batch_size=config.batch_size,
                seed=config.seed,
            )
            batches = data.ResumableBatches(
                dataset,
                os.path.join(config.output_dir, "data_state"),
                per_epoch,
                save=chief,
            )
        if self.resume:
            try:
                replayed = batches.resume(done)
            except ValueError as error:
                raise CheckpointReadError(f"`resume`: {error}") from None
            if replayed:
                _note(
                    f"no saved data position at step {done}: {replayed} "
                    "batches were read again to reach it"
                )
        return batches

    def _validation_batches(self):
        """The held-out batches: the same ones at every evaluation."""
        from keras_spactor import data
        from keras_spactor.data.array_batches import ArrayBatches
        from keras_spactor.data.array_batches import is_array_batches

        config = self.config
        source = config.validation_source()
        if is_array_batches(source):
            batches = ArrayBatches(
                source, config.batch_size, self.model.preprocessor
            ).batches()
            return list(itertools.islice(batches, config.validation_steps))
        return data.pretraining_dataset(
            source,
            self.model.preprocessor,
            batch_size=config.batch_size,
            seed=config.seed,
            split="validation",
            shuffle_buffer=None,
            repeat=False,
        ).take(config.validation_steps)

    def _fit(self, tau, done, chief):
        """Trains from step `done`; writes the outputs; the summary."""
        config = self.config
        # Epochs are checkpoint intervals: a divisor of `steps`, so none
        # overshoots, and of the steps done, so a resume starts on an epoch.
        per_epoch = math.gcd(
            math.gcd(config.steps, config.checkpoint_every), done
        )
        batches = self._batches(done, per_epoch, chief)
        start = time.time()
        peak = config.peak_tflops
        progress = TrainingProgress.for_model(
            self.model,
            config.batch_size,
            config.inputs_length,
            peak_flops_per_second=peak * 1e12 if peak else None,
        )
        logger = RunLogger(progress, config.preset, config.data)
        print(startup_line(config, self.model, tau.resolve(), done), flush=True)
        guard = StopOnNonFiniteLoss()
        saver, scratch = self._saver(batches, chief)
        if self.resume:
            saver.saved_steps.append(done)
        # After `progress`, whose logs the bar and TensorBoard show; the
        # guard before the saver: a broken state is never saved.
        callbacks = [tau, progress, logger, StageProgbarLogger()]
        callbacks += self._logging_callbacks(chief) + [guard, saver]
        try:
            self.model.fit(
                this_process_rows(batches.batches()),
                epochs=-(-config.steps // per_epoch),
                initial_epoch=done // per_epoch,
                steps_per_epoch=per_epoch,
                shuffle=False,  # the batches come shuffled
                callbacks=callbacks,
                verbose=2 if not sys.stdout.isatty() else 1,
            )
        except Exception as error:
            if not is_data_read_error(error):
                raise
            self._checkpoint_after_data_error(error, saver, guard)
        if guard.bad_step is not None:
            # Nothing is written from a broken state: no checkpoint, no
            # preset.
            raise self._non_finite_loss_error(guard.bad_step, saver, done)
        summary = logger.summary(
            self.model, tau.resolved_tau, time.time() - start
        )
        if self.evaluation is not None and self.evaluation.results:
            summary["validation"] = self.evaluation.results[-1]
        self._write_outputs(summary, batches, saver, scratch)
        return summary

    def _saver(self, batches, chief):
        """The checkpoint callback, and the scratch folder of a process
        that is not the chief (`None` for the chief)."""
        if chief:
            saver = AtomicCheckpoint(
                self.checkpoint_path,
                before_save=batches.save_position,
                on_saved=batches.keep,
            )
            return saver, None
        # Saving runs collectives, so every process saves; the others'
        # copies go to a scratch folder, deleted at the end.
        scratch = tempfile.mkdtemp(prefix="keras-spactor-process-")
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        return AtomicCheckpoint(os.path.join(scratch, CHECKPOINT_FILE)), scratch

    def _logging_callbacks(self, chief):
        """TensorBoard (the chief's, where TensorFlow, which writes its
        files, is installed) and the held-out evaluation."""
        callbacks = []
        tensorboard = _has_tensorflow()
        if chief and tensorboard:
            logs = os.path.join(self.config.output_dir, "logs")
            callbacks.append(keras.callbacks.TensorBoard(logs, update_freq=10))
        elif chief:
            _note("TensorFlow is not installed: no TensorBoard logs")
        if self.config.evaluate_every:
            self.evaluation = self._evaluation(chief and tensorboard)
            callbacks.append(self.evaluation)
        return callbacks

    def _non_finite_loss_error(self, bad_step, saver, done):
        checkpoint = self.checkpoint_path
        last = saver.saved_step if saver.saved_step is not None else done
        good = (
            f"the last good checkpoint is {checkpoint} (step {last})"
            if file_paths.exists(checkpoint)
            else "no checkpoint was written"
        )
        return NonFiniteLossError(
            f"the loss became non-finite at step {bad_step}; training "
            f"stopped and {good}. A resume replays the same batches; a new "
            "run with a lower `learning_rate` is the usual cure.",
            step=bad_step,
        )

    def _write_outputs(self, summary, batches, saver, scratch):
        """The chief writes the preset and `summary.json`; another process
        saves its preset (a collective) to its scratch folder, deleted."""
        output_dir = self.config.output_dir
        if scratch is not None:
            self.model.save_to_preset(os.path.join(scratch, "preset"))
            shutil.rmtree(scratch, ignore_errors=True)
            return
        if saver.saved_step is not None:
            batches.discard_after(saver.saved_step)
        self.model.save_to_preset(os.path.join(output_dir, "preset"))
        summary_file = os.path.join(output_dir, "summary.json")
        with file_paths.open_file(summary_file, "w") as f:
            f.write(json.dumps(summary, indent=2))

    def _evaluation(self, logged):
        from keras_spactor.callbacks.held_out_evaluation import (
            HeldOutEvaluation,
        )

        log_dir = None
        if logged:
            log_dir = os.path.join(self.config.output_dir, "logs", "validation")
        return HeldOutEvaluation(
            self._validation_batches(),
            every=self.config.evaluate_every,
            log_dir=log_dir,
        )

    def _checkpoint_after_data_error(self, error, saver, guard):
        """Saves the last whole step (the batch that failed never ran) and
        raises `DataReadError`."""
        step = _steps_done(self.model)
        # The input iterator just failed: its state is not saved (a resume
        # restores an earlier one and reads the batches since).
        saver.before_save = None
        if guard.bad_step is None and step != saver.saved_step:
            try:
                saver.save(step, self.model)
            except CheckpointWriteError as write_error:
                raise DataReadError(
                    f"reading `data` failed ({error}); also {write_error}"
                ) from error
        raise DataReadError(
            f"reading `data` failed at step {step} "
            f"({data_error_text(error)}); the run is checkpointed at step "
            f"{saver.saved_step} in {self.checkpoint_path}: fix the data, "
            "then `resume`"
        ) from error


def make_optimizer(config):
    """The optimizer and learning-rate schedule of a `PretrainingConfig`."""
    from keras_spactor.schedules import InverseSquareRootSchedule

    rate = config.learning_rate
    if rate is None:
        rate = 0.01 if config.optimizer == "adafactor" else 1e-3
    if config.schedule == "rsqrt":
        rate = InverseSquareRootSchedule(rate, config.warmup_steps)
    elif config.schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(
            0.0,
            config.steps,
            warmup_target=rate,
            warmup_steps=config.warmup_steps,
        )
    if config.optimizer == "adafactor":
        return keras.optimizers.Adafactor(learning_rate=rate)
    return keras.optimizers.AdamW(learning_rate=rate, weight_decay=0.01)


def checkpoint_tokenizer(preset):
    """The tokenizer of a transformers T5 checkpoint, else `None`."""
    from keras_spactor.interchange import transformers_import

    directory = transformers_import.transformers_checkpoint_directory(preset)
    if directory is None:
        return None
    return transformers_import.load_transformers_tokenizer(directory)


def this_process_rows(batches):
    """Each global batch's rows of this process (all of a single one)."""
    if distribution.process_count() == 1:
        yield from batches
        return
    for batch in batches:
        yield distribution.process_rows(batch)


def _steps_done(model):
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def _has_tensorflow():
    return importlib.util.find_spec("tensorflow") is not None


def _note(text):
    print(f"keras-spactor: {text}", file=sys.stderr)
