"""The documents of text lines: a JSONL line's `"text"`, or the line.

Shared by the file sources (`sources.py`) and the Hub's shards
(`hub_source.py`), so that both read a line by the same rule and neither
imports the other for it.
"""

import json

import tensorflow as tf


def parse_jsonl_line(path, line_number, line):
    """The `"text"` string of one JSONL line.

    Args:
        path: str. The file, named in errors.
        line_number: int. The line's number (from 1), named in errors.
        line: str. The line.

    Raises:
        ValueError: the line is not JSON, or has no `"text"` string.
    """
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{path}, line {line_number}: not valid JSON ({e.msg})."
        ) from None
    if not isinstance(record, dict) or "text" not in record:
        raise ValueError(
            f'{path}, line {line_number}: the JSON object has no "text" field.'
        )
    if not isinstance(record["text"], str):
        raise ValueError(f'{path}, line {line_number}: "text" is not a string.')
    return record["text"]


def documents_of_lines(paths, is_jsonl, numbers, lines):
    """`sources.iter_file_documents`'s rule for a batch of lines (eager
    tensors, as `tf.py_function` passes them), as UTF-8 bytes."""
    documents = []
    for path, jsonl, number, line in zip(
        paths.numpy(), is_jsonl.numpy(), numbers.numpy(), lines.numpy()
    ):
        text = line.decode("utf-8", errors="replace")
        if jsonl and text.strip():
            text = parse_jsonl_line(path.decode(), int(number), text)
        elif jsonl:
            text = ""  # A blank line: an empty document, counted.
        documents.append(text.encode("utf-8"))
    return tf.constant(documents, dtype=tf.string)
