"""The package uses public Keras and keras-hub APIs, except in two
compatibility modules.

A Keras or keras-hub upgrade that moves a private name must break
`_keras_compat.py` or `_keras_hub_compat.py` alone (where each use says why
no public API does the job), not code spread over the package.
"""

import ast
import pathlib
import re

import keras_spactor

PACKAGE = pathlib.Path(keras_spactor.__file__).parent
COMPAT = PACKAGE / "_keras_compat.py"
HUB_COMPAT = PACKAGE / "_keras_hub_compat.py"
PRIVATE_KERAS = {
    "a keras.src import": re.compile(r"^\s*(from|import)\s+keras\.src\b", re.M),
    "keras.src in code": re.compile(r"\bkeras\.src\."),
    "a keras_hub.src import": re.compile(
        r"^\s*(from|import)\s+keras_hub\.src\b", re.M
    ),
    "keras_hub.src in code": re.compile(r"\bkeras_hub\.src\."),
    "keras-hub's _relative_position_bucket": re.compile(
        r"\._relative_position_bucket\b"
    ),
    "a callback's _model": re.compile(r"\bcallback\._model\b"),
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


def private_attributes(path):
    """`x._name` in `path`'s code, where `x` is not `self`, `cls` or
    `super()` (a module's own private state): another object's."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Attribute):
            continue
        if not node.attr.startswith("_") or node.attr.startswith("__"):
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        if isinstance(owner, ast.Call) and ast.unparse(owner) == "super()":
            continue
        found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: ")
        found[-1] += ast.unparse(node)
    return found


def test_private_keras_is_used_only_in_the_compat_modules():
    sources = sorted(PACKAGE.rglob("*.py"))
    assert COMPAT in sources and HUB_COMPAT in sources
    others = [p for p in sources if p not in (COMPAT, HUB_COMPAT)]
    assert [u for p in others for u in private_keras_uses(p)] == []
    assert [a for p in others for a in private_attributes(p)] == []


def test_the_patterns_see_the_compat_module_uses():
    # The check above could pass vacuously with patterns that match
    # nothing; the compatibility module does use each private name.
    uses = private_keras_uses(COMPAT)
    assert any("_learning_rate" in u for u in uses)
    assert any("_layout_map" in u for u in uses)
    assert any("_value" in u for u in uses)
    assert any("_model" in u for u in uses)
    hub_uses = private_keras_uses(HUB_COMPAT)
    assert any("keras_hub.src import" in u for u in hub_uses)
    assert any("_relative_position_bucket" in u for u in hub_uses)
    assert any("_layout_map" in a for a in private_attributes(COMPAT))
