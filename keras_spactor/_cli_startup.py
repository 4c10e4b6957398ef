"""Quiets `keras-spactor`'s start-up output before TensorFlow loads.

`keras_spactor/__init__.py` imports this module before anything else: the
`keras-spactor` script and `python -m keras_spactor` import the package,
and with it TensorFlow, Keras and JAX, before `cli.main` runs. Imported as
a library, it changes nothing (see `cli_output.quiet_if_cli`).
"""

from keras_spactor import cli_output

cli_output.quiet_if_cli()
