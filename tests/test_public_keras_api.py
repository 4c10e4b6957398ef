"""The package uses public Keras APIs, except in one compatibility module.

A Keras upgrade that moves a private name must break `_keras_compat.py`
alone (where each use says why no public API does the job), not code
spread over the package.
"""

import pathlib
import re

import keras_spactor

PACKAGE = pathlib.Path(keras_spactor.__file__).parent
COMPAT = PACKAGE / "_keras_compat.py"
PRIVATE_KERAS = {
    "a keras.src import": re.compile(r"^\s*(from|import)\s+keras\.src\b", re.M),
    "keras.src in code": re.compile(r"\bkeras\.src\."),
    "an optimizer's _learning_rate": re.compile(r"\._learning_rate\b(?!\()"),
    "a distribution's _layout_map": re.compile(r"\._layout_map\b"),
    "a variable's _value": re.compile(r"\bvariable\._value\b"),
}


def private_keras_uses(path):
    text = path.read_text()
    return [
        f"{path.relative_to(PACKAGE.parent)}: {what}"
        for what, pattern in PRIVATE_KERAS.items()
        if pattern.search(text)
    ]


def test_private_keras_is_used_only_in_the_compat_module():
    sources = sorted(PACKAGE.rglob("*.py"))
    assert COMPAT in sources
    found = [u for p in sources if p != COMPAT for u in private_keras_uses(p)]
    assert found == []


def test_the_patterns_see_the_compat_module_uses():
    # The check above could pass vacuously with patterns that match
    # nothing; the compatibility module does use each private name.
    uses = private_keras_uses(COMPAT)
    assert any("_learning_rate" in u for u in uses)
    assert any("_layout_map" in u for u in uses)
    assert any("_value" in u for u in uses)
