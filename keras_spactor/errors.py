"""The errors a pre-training run raises, one class per way it can stop.

Each message is one line (a resume's mismatches, one per line) that says
what happened and what to do. Settings are named in backticks as
`PretrainingConfig` names them (`batch_size`); `keras-spactor pretrain`
prints the same text with its flags (`--batch-size`).
"""


class RunError(RuntimeError):
    """A pre-training run stopped; the checkpoints it wrote are intact."""


class ConfigError(RunError, ValueError):
    """A setting that is invalid, or that contradicts the run it resumes.

    Args:
        message: str. What is wrong; names the setting in backticks.
        field: str or `None`. The `PretrainingConfig` field at fault
            (`"resume"` for the resume itself).

    Example:
    ```python
    try:
        keras_spactor.PretrainingConfig(batch_size=0)
    except keras_spactor.ConfigError as error:
        print(error.field)  # batch_size
    ```
    """

    def __init__(self, message, field=None):
        super().__init__(message)
        self.field = field


class CheckpointReadError(RunError):
    """The checkpoint to resume from cannot be read (truncated, damaged)."""


class CheckpointWriteError(RunError):
    """A checkpoint could not be written; the ones already saved are
    intact."""


class DataReadError(RunError):
    """Reading the training data failed mid-run; the last whole step is
    checkpointed, so the run resumes once the data is readable."""


class NonFiniteLossError(RunError):
    """The loss became NaN or infinite; nothing was saved from that state.

    Args:
        message: str.
        step: int. The optimizer step whose loss was not finite.
    """

    def __init__(self, message, step=None):
        super().__init__(message)
        self.step = step


class RunFinishedError(RunError):
    """The run to resume has already trained all its steps (raise `steps`
    to extend it)."""
