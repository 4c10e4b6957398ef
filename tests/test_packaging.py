"""Packaging: ranges a Colab runtime can satisfy, constraints CI resolved,
and a wheel that installs without a checkout (as the guides do)."""

import glob
import os
import re
import subprocess
import sys
import tomllib
import zipfile

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _project():
    with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def _constraints(path):
    pins = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                name, version = line.split("==")
                pins[_canonical(name)] = Version(version)
    return pins


def _canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def test_dependencies_are_ranges_not_pins():
    """A pin would make pip replace the jax a TPU runtime ships."""
    for line in _project()["dependencies"]:
        requirement = Requirement(line)
        assert not any(s.operator == "==" for s in requirement.specifier), line


def test_colab_python_and_jax_are_admitted():
    project = _project()
    pythons = SpecifierSet(project["requires-python"])
    for python in ("3.11", "3.12", "3.13"):
        assert Version(python) in pythons, python
    jax = next(
        Requirement(line)
        for line in project["dependencies"]
        if Requirement(line).name == "jax"
    )
    # Colab's Python 3.13 TPU runtime (jax 0.12), and a later jax.
    assert Version("0.12.0.1") in jax.specifier
    assert Version("0.13.0") in jax.specifier


@pytest.mark.parametrize("python", ["3.11", "3.13"])
def test_constraints_pin_every_dependency_inside_its_range(python):
    path = os.path.join(REPO_ROOT, "constraints", f"py{python}.txt")
    pins = _constraints(path)
    extras = _project()["optional-dependencies"]["test"]
    for line in _project()["dependencies"] + extras:
        requirement = Requirement(line)
        name = _canonical(requirement.name)
        assert name in pins, f"{name} is not pinned in {path}"
        assert pins[name] in requirement.specifier, (name, pins[name])


@pytest.mark.slow
@pytest.mark.backend_independent
def test_wheel_holds_the_package_and_the_command(tmp_path):
    """The guides install the wheel; it must hold every module and the
    `keras-spactor` entry point, and be named as the guides say."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            REPO_ROOT,
        ],
        check=True,
    )
    (wheel,) = glob.glob(str(tmp_path / "*.whl"))
    version = _project()["version"]
    name = f"keras_spactor-{version}-py3-none-any.whl"
    assert os.path.basename(wheel) == name
    for guide in glob.glob(os.path.join(REPO_ROOT, "guides", "*.py")):
        with open(guide) as f:
            assert name in f.read(), guide
    with zipfile.ZipFile(wheel) as archive:
        files = set(archive.namelist())
        entry_points = next(f for f in files if f.endswith("entry_points.txt"))
        assert "keras-spactor = keras_spactor._cli_startup:main" in (
            archive.read(entry_points).decode()
        )
    package = os.path.join(REPO_ROOT, "keras_spactor")
    for path in glob.glob(os.path.join(package, "**", "*"), recursive=True):
        if os.path.isfile(path) and "__pycache__" not in path:
            relative = os.path.relpath(path, REPO_ROOT).replace(os.sep, "/")
            assert relative in files, f"{relative} is missing from the wheel"
