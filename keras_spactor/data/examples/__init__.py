"""Tiny labelled data sets shipped with the package, for offline examples.

`sentiment-tiny`: short sentences about films, books, food and travel,
labelled `positive` or `negative` (20 + 20 to train on, 8 + 8 to evaluate),
written for this package. Each split is a `label<TAB>sentence` TSV, the
format `keras-spactor finetune` reads.
"""

import os

NAMES = ("sentiment-tiny",)
SPLITS = ("train", "validation")


def labelled_tsv(name, split):
    """The path of a shipped labelled TSV.

    Args:
        name: str. One of `NAMES`.
        split: str. `"train"` or `"validation"`.

    Returns:
        The file's path.

    Example:
    ```python
    finetune("runs/demo/preset", labelled_tsv("sentiment-tiny", "train"),
             labelled_tsv("sentiment-tiny", "validation"), "runs/tiny")
    ```
    """
    if name not in NAMES:
        raise ValueError(
            f"Unknown example data set {name!r}. Available: {list(NAMES)}."
        )
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    directory = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(directory, f"{name.replace('-', '_')}.{split}.tsv")
