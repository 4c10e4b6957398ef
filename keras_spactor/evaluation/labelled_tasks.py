"""A classification task: its training and evaluation files, read and
checked together."""

from keras_spactor.labelled_data import read_labelled_tsv


def check_labels(train_labels, evaluation_labels, evaluation_path):
    """Raise `ValueError` if the evaluation file has labels never trained
    (rank classification can only choose among the training labels)."""
    unseen = sorted(set(evaluation_labels) - set(train_labels))
    if unseen:
        raise ValueError(
            f"{evaluation_path} has labels unseen in training: {unseen}."
        )


def read_task(train_path, evaluation_path, max_train=None, max_evaluation=None):
    """A task's training and evaluation TSVs, read and checked together.

    Args:
        train_path: str. Training TSV (`label<TAB>text`).
        evaluation_path: str. Evaluation TSV.
        max_train, max_evaluation: optional ints: keep only the first
            examples of each.

    Returns:
        `((train_labels, train_texts), (eval_labels, eval_texts))`.

    Raises:
        ValueError: an evaluation label never occurs in training (and the
            errors of `read_labelled_tsv`).

    Example:
    ```python
    (labels, texts), (eval_labels, eval_texts) = read_task(
        "sst2.train.tsv", "sst2.validation.tsv", max_train=2000
    )
    ```
    """
    train = read_labelled_tsv(train_path, max_train)
    evaluation = read_labelled_tsv(evaluation_path, max_evaluation)
    check_labels(train[0], evaluation[0], evaluation_path)
    return train, evaluation
