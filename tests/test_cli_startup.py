"""The CLI's entry point quiets start-up output; `import keras_spactor` not.

Each test runs a fresh interpreter: what matters is what is imported, and
what happens to file descriptor 2, before and after the package loads.
"""

import json
import os
import subprocess
import sys

import pytest

import keras_spactor

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("keras", "keras_hub", "tensorflow", "jax")
# One absl line that `cli_output.STARTUP_NOISE` drops, and one it keeps.
NOISE = (
    "I0000 00:00:1795756809.768140   13292 port.cc:153] oneDNN custom "
    "operations are on.\n"
)
KEPT = "a line the filter keeps\n"


def _python(code, *arguments):
    result = subprocess.run(
        [sys.executable, "-c", code, *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


LIBRARY = f"""
import json, os, sys, warnings

# What the `keras-spactor` script and `python -m keras_spactor` look like.
sys.argv = ["/venv/bin/keras-spactor", "pretrain"]
sys.orig_argv = [sys.executable, "-m", "keras_spactor", "pretrain"]
stderr = os.fstat(2)
import keras_spactor
heavy = [m for m in {HEAVY!r} if m in sys.modules]
keras_spactor.SpacTorT5  # loads Keras, keras-hub and the model
os.write(2, {NOISE!r}.encode())
print(json.dumps({{
    "heavy_on_import": heavy,
    "stderr_unchanged": os.fstat(2) == stderr,
    "warning_filters": [
        f[1].pattern for f in warnings.filters
        if f[1] is not None and "T5MultiHeadAttention" in f[1].pattern
    ],
}}))
"""


@pytest.mark.slow  # a fresh Python process
def test_importing_the_package_quiets_nothing_whatever_argv_says():
    report, stderr = _python(LIBRARY)
    assert report["heavy_on_import"] == []
    assert report["stderr_unchanged"]  # the same file, not a pipe
    assert report["warning_filters"] == []
    assert NOISE in stderr  # fd 2 is the terminal's, unfiltered


ENTRY = f"""
import json, os, sys

import keras_spactor._cli_startup as startup

heavy = [m for m in {HEAVY!r} if m in sys.modules]
import keras_spactor.cli as cli
from keras_spactor import cli_output


def main():  # stands in for the CLI: writes noise where TF would
    stderr = cli_output.take_started_filter()
    os.write(2, ({NOISE!r} + {KEPT!r}).encode())
    if stderr is not None:
        stderr.stop()
    print(json.dumps({{"heavy_before_main": heavy,
                       "filtered": stderr is not None}}))
    return 0


cli.main = main
sys.exit(startup.main())
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_the_entry_point_quiets_before_anything_heavy_loads(verbose):
    arguments = ["pretrain"] + (["--verbose"] if verbose else [])
    report, stderr = _python(ENTRY, *arguments)
    assert report["heavy_before_main"] == []
    assert report["filtered"] == (not verbose)
    assert KEPT in stderr
    assert (NOISE in stderr) == verbose


def test_python_m_keras_spactor_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "keras_spactor", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("usage: keras-spactor")


def test_lazy_names_are_complete():
    names = set(keras_spactor.__all__)
    assert {"SpacTorT5", "data", "export_to_transformers"} <= names
    assert names <= set(dir(keras_spactor))
    for name in sorted(names):
        assert getattr(keras_spactor, name) is not None, name
    from keras_spactor import SpacTorT5
    from keras_spactor.models import SpacTorT5 as from_models

    assert SpacTorT5 is from_models
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        keras_spactor.nope


REGISTERED = """
import json, sys
{imports}
from keras.saving import get_registered_object
names = ["SpacTorT5", "InverseSquareRootSchedule", "gelu_approximate"]
print(json.dumps(
    [get_registered_object("keras_spactor>" + n) is not None for n in names]
))
"""


@pytest.mark.slow  # fresh Python processes
@pytest.mark.parametrize(
    "imports, registered",
    [
        # isort's order: a `.keras` file or preset loads with no name used.
        ("import keras\nimport keras_spactor", True),
        # Keras loaded later: the names register on first use.
        ("import keras_spactor\nimport keras", False),
        ("import keras_spactor\nimport keras\nkeras_spactor.data", True),
    ],
)
def test_keras_finds_spactors_objects_once_both_are_imported(
    imports, registered
):
    found, _ = _python(REGISTERED.format(imports=imports))
    assert found == [registered] * 3
