"""`keras-spactor`'s entry point: quiet output first, then the CLI.

The `keras-spactor` script and `python -m keras_spactor` (`__main__.py`)
both start in `main`, which starts the output filter of
`cli_output.quiet_for_cli` before the CLI's modules import TensorFlow,
Keras and JAX (whose start-up notices it drops). `import keras_spactor`
imports none of them, so nothing loads them before `main` runs; imported as
a library, the package quiets nothing, whatever `sys.argv` says.
"""

import sys

from keras_spactor import cli_output


def main():
    """Runs `keras-spactor` on `sys.argv`; returns its exit status."""
    cli_output.quiet_for_cli(sys.argv[1:])
    from keras_spactor import cli  # TensorFlow and Keras load from here on

    return cli.main()
