"""Labelled text for fine-tuning: `label<TAB>text` TSVs, the shipped
examples and TFDS classification sets, read one way.

A source is a spec string: a TSV path, `builtin:<name>[:<split>]` (see
`keras_spactor.data.examples`) or `tfds:<name>[:<version>][:<split>]`
(e.g. `tfds:glue/sst2`, `tfds:glue/sst2:train[:90%]`). No TensorFlow is
needed except for `tfds:` sources.
"""

import os
import re

# `tfds:NAME[:VERSION][:SPLIT]`, e.g. `tfds:glue/sst2:train[:90%]`.
TFDS_SPEC = re.compile(
    r"tfds:(?P<name>[\w/.-]+?(?::\d+\.\d+\.\d+)?)(?::(?P<split>.+))?"
)


def read_labelled_tsv(path, max_examples=None):
    """Read `label<TAB>text` lines (a `label<TAB>...` header is skipped).

    Args:
        path: str. The TSV file.
        max_examples: int. Keep only the first examples.

    Returns:
        `(labels, texts)`, two lists of str.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line has no tab or an empty label (names file and
            line).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such labelled TSV file: {path}")
    labels, texts = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if "\t" not in line:
                raise ValueError(
                    f"{path}, line {number}: no tab; expected 'label<TAB>text'."
                )
            label, text = line.split("\t", 1)
            if number == 1 and label.strip().lower() == "label":
                continue
            if not label.strip():
                raise ValueError(f"{path}, line {number}: empty label.")
            labels.append(label.strip())
            texts.append(text.strip())
            if max_examples and len(labels) >= max_examples:
                break
    if not labels:
        raise ValueError(f"{path} holds no labelled examples.")
    return labels, texts


def tfds_labelled_examples(name, split, max_examples=None):
    """A labelled TFDS split as label names and one-line texts.

    The label is the dataset's `label` class feature, as its class name;
    the text is its one text feature, or `name: value` for each of several
    (T5's format for sentence pairs). Unlabelled examples (label -1, as in
    GLUE's test splits) are left out.

    Args:
        name: str. The TFDS name, e.g. `"glue/sst2"`; downloaded and
            prepared on first use.
        split: str. A TFDS split, e.g. `"validation"` or `"train[:90%]"`.
        max_examples: int. Keep only the first examples.

    Returns:
        `(labels, texts, text_features)`: two lists of str and the names of
        the text features read.

    Example:
    ```python
    labels, texts, _ = tfds_labelled_examples("glue/sst2", "validation")
    ```
    """
    import tensorflow_datasets as tfds

    ds, info = tfds.load(name, split=split, with_info=True)
    features = info.features
    label = features["label"] if "label" in features.keys() else None
    text_features = [
        k for k, f in features.items() if isinstance(f, tfds.features.Text)
    ]
    if not isinstance(label, tfds.features.ClassLabel) or not text_features:
        raise ValueError(
            f"TFDS dataset {name!r} needs a `label` class feature and text "
            f"features; it has {sorted(features.keys())}."
        )
    labels, texts = [], []
    for example in ds.as_numpy_iterator():
        index = int(example["label"])
        if index < 0:
            continue
        parts = [example[k].decode("utf-8", "replace") for k in text_features]
        if len(parts) > 1:
            parts = [f"{k}: {text}" for k, text in zip(text_features, parts)]
        labels.append(label.int2str(index))
        # One line per example: tabs and line breaks become spaces.
        texts.append(" ".join(" ".join(parts).split()))
        if max_examples and len(labels) >= max_examples:
            break
    return labels, texts, text_features


def _tfds_name_and_split(spec, split):
    match = TFDS_SPEC.fullmatch(spec)
    if not match:
        raise ValueError(f"expected tfds:NAME[:SPLIT], got {spec!r}")
    return match["name"], match["split"] or split


def labelled_file(spec, split, data_dir):
    """The TSV file a source spec stands for (a `tfds:` split is written).

    Args:
        spec: str. A TSV path, `builtin:...` or `tfds:...` source.
        split: str. The split of a `builtin:` or `tfds:` spec that names
            none.
        data_dir: str. Where a TFDS split is written as `<split>.tsv`.

    Returns:
        A path to read with `read_labelled_tsv`.

    Example:
    ```python
    path = labelled_file("tfds:glue/sst2", "validation", "runs/sst2/data")
    ```
    """
    if spec.startswith("builtin:"):
        from keras_spactor.data import examples

        name, _, named_split = spec[len("builtin:") :].partition(":")
        return examples.labelled_tsv(name, named_split or split)
    if spec.startswith("tfds:"):
        name, tfds_split = _tfds_name_and_split(spec, split)
        labels, texts, text_features = tfds_labelled_examples(name, tfds_split)
        os.makedirs(data_dir, exist_ok=True)
        path = os.path.join(data_dir, f"{split}.tsv")
        header = text_features[0] if len(text_features) == 1 else "text"
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"label\t{header}\n")
            f.writelines(f"{y}\t{x}\n" for y, x in zip(labels, texts))
        count = len(labels)
        print(f"{spec}: {count} labelled examples of {tfds_split!r} in {path}")
        return path
    return spec


def read_labelled(spec, split, max_examples=None):
    """Labels and texts of a source, whatever its kind.

    Args:
        spec: str. A `label<TAB>text` TSV path, `builtin:<name>[:<split>]`
            or `tfds:<name>[:<version>][:<split>]`.
        split: str. The split of a `builtin:` or `tfds:` spec that names
            none (a TSV path is read whole).
        max_examples: int. Keep only the first examples.

    Returns:
        `(labels, texts)`, two lists of str.

    Example:
    ```python
    labels, texts = read_labelled("builtin:sentiment-tiny", "train")
    labels, texts = read_labelled("tfds:glue/sst2", "validation")
    ```
    """
    if spec.startswith("tfds:"):
        name, tfds_split = _tfds_name_and_split(spec, split)
        labels, texts, _ = tfds_labelled_examples(
            name, tfds_split, max_examples
        )
        if not labels:
            raise ValueError(f"{spec} holds no labelled examples.")
        return labels, texts
    return read_labelled_tsv(labelled_file(spec, split, None), max_examples)
