"""The classification statistics, against hand-computed values."""

import pytest

from keras_spactor.evaluation import classification_metrics as cm
from keras_spactor.labelled_data import read_labelled_tsv


def test_wilson_interval_matches_the_formula():
    # 81 of 100 at z = 1.96, by hand: p = 0.81, z^2/n = 0.038416,
    # centre = (0.81 + 0.019208) / 1.038416 = 0.798531,
    # half = 1.96 / 1.038416 * sqrt(0.81 * 0.19 / 100 + 3.8416 / 40000)
    #      = 0.076322.
    low, high = cm.wilson_interval(81, 100, z=1.96)
    assert low == pytest.approx(0.798531 - 0.076322, abs=2e-6)
    assert high == pytest.approx(0.798531 + 0.076322, abs=2e-6)
    # No successes: [0, z^2 / (n + z^2)].
    low, high = cm.wilson_interval(0, 10, z=1.96)
    assert low == pytest.approx(0.0, abs=1e-12)
    assert high == pytest.approx(3.8416 / 13.8416)
    low, high = cm.wilson_interval(50, 100)  # default 95%
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)


def test_majority_rate_and_label_counts_of_a_hand_made_tsv(tmp_path):
    path = tmp_path / "eval.tsv"
    path.write_text(
        "label\tsentence\nb\tone\na\ttwo\nb\tthree\nc\tfour\nb\tfive\n"
    )
    labels, texts = read_labelled_tsv(str(path))
    assert labels == ["b", "a", "b", "c", "b"]
    assert texts[0] == "one"
    assert cm.majority_label(labels) == "b"
    assert cm.majority_label(["y", "x", "x", "y"]) == "x"  # ties: first
    assert cm.label_counts(labels) == {"a": 1, "b": 3, "c": 1}
    assert cm.label_counts(["a", "a"], candidates=["b", "a"]) == {
        "a": 2,
        "b": 0,
    }


def test_majority_accuracy_and_exact_match():
    assert cm.majority_accuracy(["b", "a", "b", "c", "b"]) == pytest.approx(0.6)
    # Ties: the alphabetically first label, whose share is the same.
    assert cm.majority_accuracy(["y", "x"]) == 0.5
    assert cm.exact_match_accuracy([" pos", "neg", "pos"], ["pos"] * 3) == (
        pytest.approx(2 / 3)
    )
    assert cm.exact_match_accuracy([], []) == 0.0
