"""Quiet command-line output: known start-up noise is dropped, nothing else.

TensorFlow, XLA and CUDA log through absl before anything calls
`absl::InitializeLog()`, and absl then writes every message to stderr
whatever `TF_CPP_MIN_LOG_LEVEL` says. So besides the environment variables,
the CLI passes its stderr through a line filter that drops the informational
lines of the C++ runtimes and a few known-harmless warnings and errors;
every other line goes through unchanged. Keras warnings are filtered by
message with `warnings.filterwarnings`. `keras-spactor ... --verbose` skips
all of it.

Nothing here imports TensorFlow, Keras or JAX: `quiet_output` must run
before they are imported. Both ways to run the CLI (the `keras-spactor`
script and `python -m keras_spactor`) start in `_cli_startup.main`, which
calls `quiet_for_cli` before it imports the CLI (and with it TensorFlow);
`import keras_spactor` imports none of them, and never quiets anything.
"""

import atexit
import os
import re
import sys
import threading
import warnings

# The prefix of an absl log line: severity, date, time, thread, file:line.
_ABSL = r"[IWEF]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "

# Whole stderr lines dropped unless --verbose.
STARTUP_NOISE = (
    r"WARNING: All log messages before absl::InitializeLog\(\) is called "
    r"are written to STDERR",
    # Informational lines (TF_CPP_MIN_LOG_LEVEL=1 would hide them, but TF
    # logs some before it reads the variable): oneDNN, "Could not find
    # cuda drivers", CPU instruction sets, device creation.
    r"I\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] .*",
    r"To enable the following instructions: .* rebuild TensorFlow with the "
    r"appropriate compiler flags\.",
    # A TensorFlow built with CUDA on a machine without a GPU.
    _ABSL + r"failed call to cuInit: .*",
    # TF's CPU kernels for int64 fall back to Eigen; results are the same.
    _ABSL + r"oneDNN supports DT_INT64 only on platforms with AVX-512\..*",
)

# Keras warnings known to be harmless here, matched at the message start.
KNOWN_WARNINGS = (
    # keras-hub's T5 layers take explicit padding and attention masks; the
    # implicit Keras mask they drop is not used downstream.
    r"Layer '\w+' \(of type T5MultiHeadAttention\) was passed an input with "
    r"a mask attached to it",
    # SpacTor's generator is built on a one-token dummy sequence, where each
    # query attends to a single key.
    r"You are using a softmax over axis -1 of a tensor of shape "
    r"\(1, \d+, 1, 1\)",
)


class StderrLineFilter:
    """Passes file descriptor 2 through a pipe, dropping matching lines.

    C++ libraries write to the descriptor, not to `sys.stderr`, so the
    filter works at that level: a thread reads the pipe and copies every
    line that matches none of `patterns` to the original stderr. Output
    without a newline yet (a `\\r` progress bar) is copied as it comes. A
    process killed by a signal can lose the lines the thread had not copied
    yet; `keras-spactor ... --verbose` runs without the filter.

    Args:
        patterns: regular expressions a whole line (without its line end)
            must match to be dropped.

    Example:
    ```python
    stderr = StderrLineFilter(STARTUP_NOISE)
    stderr.start()
    try:
        import tensorflow as tf
    finally:
        stderr.stop()
    ```
    """

    def __init__(self, patterns):
        self._pattern = re.compile("|".join(f"(?:{p})" for p in patterns))
        self._original = None
        self._thread = None

    def start(self):
        sys.stderr.flush()
        try:
            self._original = os.dup(2)
        except OSError:  # no stderr at all: nothing to filter
            return
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._thread = threading.Thread(
            target=self._copy,
            args=(read_end, os.dup(self._original)),
            daemon=True,
        )
        self._thread.start()

    def stop(self):
        """Restores stderr once everything written so far is copied."""
        if self._original is None:
            return
        sys.stderr.flush()
        # The pipe's last write end closes: the thread reads to its end.
        os.dup2(self._original, 2)
        os.close(self._original)
        self._original = None
        self._thread.join(timeout=10)

    def _keep(self, line):
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        return not self._pattern.fullmatch(text)

    def _copy(self, read_end, write_end):
        pending = b""
        pipe = open(read_end, "rb", buffering=0)
        with pipe, open(write_end, "wb") as out:
            while chunk := pipe.read(65536):
                *lines, pending = (pending + chunk).split(b"\n")
                kept = b"".join(x + b"\n" for x in lines if self._keep(x))
                if b"\r" in pending:  # a progress bar: show it now
                    cut = pending.rindex(b"\r") + 1
                    kept, pending = kept + pending[:cut], pending[cut:]
                out.write(kept)
                out.flush()
            if pending and self._keep(pending):
                out.write(pending)


def quiet_output():
    """Silences known start-up noise for the rest of the process.

    Sets TensorFlow's log level (when the user has not), filters the Keras
    warnings in `KNOWN_WARNINGS` and starts a `StderrLineFilter` for
    `STARTUP_NOISE`. Call it before TensorFlow, Keras or JAX is imported.

    Returns:
        The started `StderrLineFilter`; `stop()` it before exiting.
    """
    if "tensorflow" not in sys.modules:  # read when TensorFlow loads
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    for message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=UserWarning)
    stderr = StderrLineFilter(STARTUP_NOISE)
    stderr.start()
    # Whatever ends the process (an uncaught error included), the lines
    # still in the pipe reach the terminal.
    atexit.register(stderr.stop)
    return stderr


_started = None  # what `quiet_for_cli` started, until `cli.main` takes it


def asks_verbose(argv):
    """Whether `argv` holds `--verbose` (or an abbreviation argparse takes)."""
    return any(
        arg.startswith("--ve") and "--verbose".startswith(arg) for arg in argv
    )


def quiet_for_cli(argv):
    """`quiet_output()` for the CLI's entry point, unless `argv` (the
    command line, without the program) asks for `--verbose`.

    `cli.main` takes the filter with `take_started_filter`.

    Args:
        argv: list of str, the CLI's arguments.
    """
    global _started
    if _started is None and not asks_verbose(argv):
        _started = quiet_output()


def take_started_filter():
    """The `StderrLineFilter` that `quiet_for_cli` started, or `None`.

    The caller owns it from then on and must `stop()` it.
    """
    global _started
    started, _started = _started, None
    return started
