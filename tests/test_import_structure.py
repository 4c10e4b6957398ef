"""The package's modules import each other without cycles.

A cycle works only while one side imports inside a function, and breaks
with an ImportError (a partially initialised module) when a module of the
cycle happens to be imported first, in whichever process does that.
"""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

import keras_spactor

PACKAGE = pathlib.Path(keras_spactor.__file__).parent
REPO_ROOT = PACKAGE.parent


def _module_names():
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def import_graph():
    """`{module: the package's modules it imports}`, from the source.

    Imports inside functions count: they run later, but they still close
    a cycle. `from a import b` counts as an import of module `a.b` when
    that is a module, else of `a`.
    """
    modules = _module_names()
    graph = {}
    for name, path in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                submodules = [f"{node.module}.{a.name}" for a in node.names]
                found = [m for m in submodules if m in modules]
                imported.update(found)
                if len(found) < len(submodules):
                    imported.add(node.module)
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def cycles(graph):
    """The groups of modules that import each other (Tarjan's strongly
    connected components of more than one module)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(module):
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in sorted(graph[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = set()
            while module not in group:
                group.add(stack.pop())
            on_stack.difference_update(group)
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_cycles_are_found():
    # The check below could pass vacuously.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    graph = import_graph()
    assert (
        "keras_spactor.models.train_steps"
        in graph["keras_spactor.models.two_stage_trainer"]
    )
    # A function-level import counts.
    assert (
        "keras_spactor.models.jax_train_step"
        in graph["keras_spactor.models.train_steps"]
    )


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph()) == []


@pytest.mark.slow  # fresh Python processes
@pytest.mark.parametrize(
    "module",
    [
        "keras_spactor.models.train_steps",
        "keras_spactor.models.jax_train_step",
        "keras_spactor.models.tensorflow_train_step",
    ],
)
def test_module_imports_first_in_a_fresh_process(module):
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
