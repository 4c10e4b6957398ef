"""Comparing two training recipes over seeds: mean, spread, and paired
differences with their standard error."""

import statistics


def mean_and_std(values):
    """The mean and sample standard deviation of `values`.

    Args:
        values: a list of numbers (e.g. one accuracy per seed).

    Returns:
        `(mean, std)`: the std is 0.0 for a single value; `(None, None)`
        for none.

    Example:
    ```python
    mean_and_std([0.70, 0.62, 0.58])  # (0.633..., 0.0611...)
    ```
    """
    if not values:
        return None, None
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.mean(values), spread


def paired_difference(a, b):
    """How much recipe `a` beats recipe `b`, seed by seed.

    Each seed's difference `a - b` removes what the seed alone decides
    (the initialisation, the data order, the fine-tuning draws), so a
    difference smaller than either recipe's spread over seeds can still
    stand out. The standard error is the differences' sample standard
    deviation over the square root of their number, and `z` the mean over
    it: |z| of about 2 or more is a difference beyond the seeds' noise.

    Args:
        a: dict from seed to a measurement of recipe `a` (`None` for one
            not measured).
        b: dict from seed to the same measurement of recipe `b`.

    Returns:
        A dict: `differences` (one per seed measured in both, by seed),
        `mean`, `standard_error` (`None` without a difference) and `z`
        (`None` where the standard error is 0 or `None`).

    Example:
    ```python
    spactor = {0: 0.70, 1: 0.62, 2: 0.58}
    span_corruption = {0: 0.60, 1: 0.50, 2: 0.55}
    paired_difference(spactor, span_corruption)["mean"]  # 0.0833...
    ```
    """
    differences = [
        a[seed] - b[seed]
        for seed in sorted(set(a) & set(b))
        if a[seed] is not None and b[seed] is not None
    ]
    mean, spread = mean_and_std(differences)
    error = spread / len(differences) ** 0.5 if differences else None
    return {
        "differences": differences,
        "mean": mean,
        "standard_error": error,
        "z": mean / error if error else None,
    }
