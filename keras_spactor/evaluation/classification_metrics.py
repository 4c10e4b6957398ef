"""What a classifier's predictions are worth: the label counts, the
majority-class baseline, exact match and the Wilson interval of an
accuracy."""

import math

import numpy as np


def label_counts(labels, candidates=None):
    """`{label: count}`, sorted by label.

    Args:
        labels: iterable of str.
        candidates: optional labels listed even when absent from `labels`
            (so a class that is never predicted shows as 0).

    Returns:
        A dict sorted by label.

    Example:
    ```python
    label_counts(["b", "a", "b"], ["a", "b", "c"])  # {"a": 1, "b": 2, "c": 0}
    ```
    """
    counts = {label: 0 for label in candidates or ()}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items()))


def majority_label(labels):
    """The most frequent label (ties go to the alphabetically first).

    Example:
    ```python
    majority_label(["neg", "pos", "pos"])  # "pos"
    ```
    """
    counts = label_counts(labels)
    return max(counts, key=counts.get)  # `counts` is sorted by label


def majority_accuracy(labels):
    """The accuracy of always predicting the most frequent label.

    Example:
    ```python
    majority_accuracy(["neg", "pos", "pos"])  # 2 / 3
    ```
    """
    labels = list(labels)
    return labels.count(majority_label(labels)) / len(labels)


def wilson_interval(successes, trials, z=1.959964):
    """The Wilson score interval of a binomial proportion (95% by default).

    Unlike the normal approximation, it stays inside [0, 1] and is sensible
    for accuracies near 0 or 1 and small evaluation sets.

    Args:
        successes: int. Correct predictions.
        trials: int. Evaluated examples.
        z: float. The standard normal quantile of the confidence level.

    Returns:
        `(low, high)`, two floats.

    Example:
    ```python
    low, high = wilson_interval(80, 100)  # about (0.711, 0.867)
    ```
    """
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    z2_n = z * z / trials
    center = (p + z2_n / 2) / (1 + z2_n)
    half = z / (1 + z2_n) * math.sqrt(p * (1 - p) / trials + z2_n / trials / 4)
    return max(0.0, center - half), min(1.0, center + half)


def exact_match_accuracy(predictions, labels):
    """Fraction of predicted strings equal to their label (whitespace
    stripped).

    Example:
    ```python
    exact_match_accuracy(["pos ", "neg"], ["pos", "pos"])  # 0.5
    ```
    """
    hits = [p.strip() == t.strip() for p, t in zip(predictions, labels)]
    return float(np.mean(hits)) if hits else 0.0
