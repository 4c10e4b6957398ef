"""The guides: notebooks in sync with their `.py`, and each guide runs."""

import glob
import importlib.util
import json
import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUIDES = sorted(glob.glob(os.path.join(REPO_ROOT, "guides", "*.py")))


def _converter():
    path = os.path.join(REPO_ROOT, "tools", "guides_to_notebooks.py")
    spec = importlib.util.spec_from_file_location("guides_to_notebooks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _name(path):
    return os.path.splitext(os.path.basename(path))[0]


def test_there_are_guides():
    assert {_name(path) for path in GUIDES} >= {
        "pretraining_t5_with_spactor",
        "finetuning_with_keras_hub",
        "what_the_curriculum_buys",
    }


@pytest.mark.parametrize("guide", GUIDES, ids=_name)
def test_notebook_in_sync(guide):
    notebook_path, text = _converter().convert(guide)
    assert os.path.exists(notebook_path), (
        f"{notebook_path} is missing: run python tools/guides_to_notebooks.py"
    )
    with open(notebook_path, encoding="utf-8") as f:
        committed = f.read()
    assert committed == text, (
        f"{os.path.basename(notebook_path)} is out of date with its .py: "
        "run python tools/guides_to_notebooks.py"
    )


def test_notebook_cells():
    converter = _converter()
    source = '''"""
Title: T
Author: A
Date created: 2026/01/01
Last modified: 2026/01/02
Description: D.
Accelerator: None
"""

"""
## Intro

Text.
"""

"""shell
pip install x
"""

import os

x = 1
"""
More.
"""
'''
    notebook = converter.guide_to_notebook(source, "t")
    kinds = [cell["cell_type"] for cell in notebook["cells"]]
    assert kinds == ["markdown", "markdown", "code", "code", "markdown"]
    sources = ["".join(cell["source"]) for cell in notebook["cells"]]
    assert sources[0].startswith("# T\n\n**Author:** A<br>")
    assert sources[1:] == ["## Intro\n\nText.", "!pip install x"] + [
        "import os\n\nx = 1",
        "More.",
    ]
    assert "accelerator" not in notebook["metadata"]
    assert all(
        cell["outputs"] == [] and cell["execution_count"] is None
        for cell in notebook["cells"]
        if cell["cell_type"] == "code"
    )
    # Deterministic: the same text twice.
    text = converter.notebook_text(notebook)
    assert text == converter.notebook_text(
        converter.guide_to_notebook(source, "t")
    )
    assert json.loads(text)["nbformat"] == 4


def run_guide(name, tmp_path, **extra_env):
    env = dict(os.environ)
    env.update(
        {
            "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax"),
            "KERAS_SPACTOR_CACHE": str(tmp_path / "cache"),
            "MPLBACKEND": "Agg",
            "SPACTOR_GUIDE_SIZE": "small",
            "SPACTOR_GUIDE_OUTPUT": str(tmp_path / "output"),
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
    )
    env.update(extra_env)
    path = os.path.join(REPO_ROOT, "guides", name + ".py")
    code = f"import runpy; runpy.run_path({path!r}, run_name='__main__')"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return tmp_path / "output", result.stdout


@pytest.mark.slow
def test_pretraining_then_finetuning_guides_run(tmp_path):
    output, stdout = run_guide("pretraining_t5_with_spactor", tmp_path)
    assert "Trained 4 steps" in stdout
    assert list((output / "run" / "logs").rglob("events.out.tfevents.*"))
    assert list((output / "run" / "logs" / "validation").iterdir())
    import keras_hub

    backbone = keras_hub.models.T5Backbone.from_preset(str(output / "preset"))
    assert backbone.hidden_dim == 64

    # The fine-tuning guide fine-tunes the preset the first one wrote.
    output, stdout = run_guide("finetuning_with_keras_hub", tmp_path)
    assert f"Preset: {output / 'preset'}" in stdout
    assert "Exact-match accuracy:" in stdout
    assert "40 training and 16 validation examples" in stdout
    config = json.loads((output / "finetuned_sst2" / "config.json").read_text())
    assert config["class_name"].endswith("T5Backbone")
    assert (output / "finetuned_sst2" / "tokenizer.json").exists()


@pytest.mark.slow
def test_curriculum_guide_runs(tmp_path):
    output, stdout = run_guide(
        "what_the_curriculum_buys",
        tmp_path,
        SPACTOR_GUIDE_RESULTS=str(tmp_path / "absent.json"),
    )
    assert "tau=2" in stdout
    png = output / "curriculum.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curriculum_guide_plots_reproduction_results(tmp_path):
    """With results.json the guide trains nothing and plots the table."""
    table = [
        {
            "objective": objective,
            "tau": tau,
            "steps": steps,
            "train_flops": steps * flops,
            "validation_sc_loss": loss,
        }
        for objective, tau, flops, losses in (
            ("sc", 0, 1.0e12, (4.0, 3.5)),
            ("spactor", 100, 1.3e12, (4.1, 3.4)),
        )
        for steps, loss in zip((200, 400), losses)
    ]
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"table": table}))
    output, stdout = run_guide(
        "what_the_curriculum_buys", tmp_path, SPACTOR_GUIDE_RESULTS=str(results)
    )
    assert "Plotting" in stdout and "tau=" not in stdout.replace(
        "SpacTor, tau=", ""
    )
    assert (output / "curriculum.png").stat().st_size > 1000
