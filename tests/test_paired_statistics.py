"""`keras_spactor.evaluation.paired_statistics` against the textbook
formulas, computed here with plain arithmetic."""

import math

import pytest

from keras_spactor.evaluation.paired_statistics import mean_and_std
from keras_spactor.evaluation.paired_statistics import paired_difference


def _textbook(values):
    n = len(values)
    mean = sum(values) / n
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance)


def test_mean_and_sample_std():
    values = [0.70, 0.62, 0.58, 0.66]
    assert mean_and_std(values) == pytest.approx(_textbook(values))
    assert mean_and_std([0.5]) == (0.5, 0.0)
    assert mean_and_std([]) == (None, None)


def test_paired_difference_pairs_seeds_and_skips_unmeasured_ones():
    a = {0: 0.70, 1: 0.62, 2: 0.58, 3: 0.9, 4: None}
    b = {2: 0.55, 1: 0.50, 0: 0.60, 4: 0.5, 5: 0.1}
    result = paired_difference(a, b)
    # Seeds 0, 1, 2 are measured in both (3 and 5 in one, 4 is missing).
    differences = [0.10, 0.12, 0.03]
    assert result["differences"] == pytest.approx(differences)
    mean, std = _textbook(differences)
    error = std / math.sqrt(3)
    assert result["mean"] == pytest.approx(mean)
    assert result["standard_error"] == pytest.approx(error)
    assert result["z"] == pytest.approx(mean / error)


def test_paired_difference_without_spread_or_pairs_has_no_z():
    same = paired_difference({0: 0.5, 1: 0.6}, {0: 0.4, 1: 0.5})
    assert same["mean"] == pytest.approx(0.1)
    assert same["standard_error"] == pytest.approx(0.0)
    assert same["z"] is None
    none = paired_difference({0: 0.5}, {1: 0.5})
    assert none == {
        "differences": [],
        "mean": None,
        "standard_error": None,
        "z": None,
    }
