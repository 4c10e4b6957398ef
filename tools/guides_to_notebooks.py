"""Convert keras-io tutobook guides (`guides/*.py`) to Jupyter notebooks.

The `.py` file is the source of truth. Its first string is the header
(`Title:`, `Author:`, `Date created:`, `Last modified:`, `Description:`,
`Accelerator:`); every other top-level triple-quoted string is a markdown
cell (one that starts with `shell` is a code cell of `!` commands), and the
code between them is a code cell. The notebook JSON (nbformat 4) is written
by hand and is deterministic: no execution counts or outputs, sorted keys,
fixed metadata, so the committed `.ipynb` files can be checked for sync.

    python tools/guides_to_notebooks.py            # all guides/*.py
    python tools/guides_to_notebooks.py --check    # exit 1 if out of date
    python tools/guides_to_notebooks.py guides/what_the_curriculum_buys.py
"""

import argparse
import ast
import glob
import json
import os
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUIDES_DIR = os.path.join(ROOT, "guides")
HEADER_FIELDS = (
    "Title",
    "Author",
    "Date created",
    "Last modified",
    "Description",
    "Accelerator",
)


def parse_header(text):
    """`{field: value}` of the header docstring; all fields required."""
    header = {}
    for line in textwrap.dedent(text).strip().splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in HEADER_FIELDS:
            header[key.strip()] = value.strip()
    missing = [field for field in HEADER_FIELDS if field not in header]
    if missing:
        raise ValueError(f"Guide header lacks {missing}.")
    return header


def _strip_blank_lines(lines):
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def split_guide(source):
    """The header and a list of `(kind, text)` with kind `markdown`,
    `code` or `shell`, in file order."""
    module = ast.parse(source)
    lines = source.splitlines()
    strings = [
        node
        for node in module.body
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    ]
    if not strings or strings[0] is not module.body[0]:
        raise ValueError("A guide starts with its header docstring.")
    header = parse_header(strings[0].value.value)
    blocks = []
    cursor = strings[0].end_lineno

    def add_code(end):
        code = _strip_blank_lines(lines[cursor:end])
        if code:
            blocks.append(("code", "\n".join(code)))

    for node in strings[1:]:
        add_code(node.lineno - 1)
        text = textwrap.dedent(node.value.value).strip("\n")
        first, _, rest = text.partition("\n")
        if first.strip() == "shell":
            blocks.append(("shell", textwrap.dedent(rest).strip("\n")))
        else:
            blocks.append(("markdown", text.strip()))
        cursor = node.end_lineno
    add_code(len(lines))
    return header, blocks


def _source_lines(text):
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + [lines[-1]]


def _markdown_cell(text):
    return {
        "cell_type": "markdown",
        "metadata": {"colab_type": "text"},
        "source": _source_lines(text),
    }


def _code_cell(text):
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {"colab_type": "code"},
        "outputs": [],
        "source": _source_lines(text),
    }


def guide_to_notebook(source, name):
    """The notebook (a dict) of a guide's source; `name` is its stem."""
    header, blocks = split_guide(source)
    title = (
        f"# {header['Title']}\n\n"
        f"**Author:** {header['Author']}<br>\n"
        f"**Date created:** {header['Date created']}<br>\n"
        f"**Last modified:** {header['Last modified']}<br>\n"
        f"**Description:** {header['Description']}"
    )
    cells = [_markdown_cell(title)]
    for kind, text in blocks:
        if kind == "markdown":
            cells.append(_markdown_cell(text))
        elif kind == "shell":
            commands = [f"!{line}" for line in text.splitlines()]
            cells.append(_code_cell("\n".join(commands)))
        else:
            cells.append(_code_cell(text))
    metadata = {
        "colab": {
            "collapsed_sections": [],
            "name": name,
            "provenance": [],
            "toc_visible": True,
        },
        "kernelspec": {
            "display_name": "Python 3",
            "language": "python",
            "name": "python3",
        },
        "language_info": {
            "codemirror_mode": {"name": "ipython", "version": 3},
            "file_extension": ".py",
            "mimetype": "text/x-python",
            "name": "python",
            "nbconvert_exporter": "python",
            "pygments_lexer": "ipython3",
            "version": "3.11.0",
        },
    }
    accelerator = header["Accelerator"]
    if accelerator.lower() not in ("none", ""):
        metadata["accelerator"] = accelerator
    return {
        "cells": cells,
        "metadata": metadata,
        "nbformat": 4,
        "nbformat_minor": 0,
    }


def notebook_text(notebook):
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False)


def convert(path):
    """`(notebook_path, text)` for the guide at `path`."""
    with open(path, encoding="utf-8") as f:
        source = f.read()
    stem = os.path.splitext(os.path.basename(path))[0]
    notebook = guide_to_notebook(source, stem)
    return os.path.splitext(path)[0] + ".ipynb", notebook_text(notebook) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("guides", nargs="*", help="default: guides/*.py")
    parser.add_argument(
        "--check",
        action="store_true",
        help="Write nothing; exit 1 if a notebook is missing or stale.",
    )
    args = parser.parse_args(argv)
    paths = args.guides or sorted(glob.glob(os.path.join(GUIDES_DIR, "*.py")))
    stale = []
    for path in paths:
        notebook_path, text = convert(path)
        current = None
        if os.path.exists(notebook_path):
            with open(notebook_path, encoding="utf-8") as f:
                current = f.read()
        if current == text:
            continue
        if args.check:
            stale.append(notebook_path)
            continue
        with open(notebook_path, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        print("Wrote", os.path.relpath(notebook_path))
    if stale:
        print(
            "Out of date (run python tools/guides_to_notebooks.py): "
            + ", ".join(os.path.relpath(path) for path in stale)
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
