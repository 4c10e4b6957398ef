"""The frozen-encoder linear probe: pooling, the regression, and a task only
the input can tell."""

import keras_hub
import numpy as np

from keras_spactor.evaluation.linear_probe import encoder_features
from keras_spactor.evaluation.linear_probe import fit_logistic_regression
from keras_spactor.evaluation.linear_probe import linear_probe
from tests.labelled_task_helpers import cat_sentences
from tests.labelled_task_helpers import preset  # noqa: F401 (fixture)
from tests.labelled_task_helpers import tokenizer  # noqa: F401 (fixture)
from tests.labelled_task_helpers import write_tsv


def test_pooling_ignores_padding_and_cuts_long_texts(preset):  # noqa: F811
    backbone = keras_hub.models.T5Backbone.from_preset(preset)
    t5_tokenizer = keras_hub.models.T5Tokenizer.from_preset(preset)
    texts = [t for _, t in cat_sentences(5, seed=3)]
    batched = encoder_features(backbone, t5_tokenizer, texts, length=12)
    # One text at a time, padded to its own length only: the same vectors.
    for text, row in zip(texts, batched):
        ids = [int(i) for i in t5_tokenizer(text)][:11] + [1]
        alone = encoder_features(backbone, t5_tokenizer, [text], len(ids))
        np.testing.assert_allclose(alone[0], row, rtol=1e-5, atol=1e-6)
    # A text longer than `length` keeps its first `length - 1` pieces.
    long = " ".join(texts)
    cut = encoder_features(backbone, t5_tokenizer, [long], length=6)
    first = " ".join(long.split()[:5])  # one piece per word here
    np.testing.assert_allclose(
        cut, encoder_features(backbone, t5_tokenizer, [first], 6), rtol=1e-5
    )


def _newton_binary_logistic_regression(x, y, l2, steps=50):
    """Reference: binary logistic regression by Newton's method on the
    same objective (sum of log-losses + l2/2 |w|^2, bias unpenalised)."""
    x = np.c_[x, np.ones(len(x))]
    w = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-x @ w))
        gradient = x.T @ (p - y) + penalty * w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty)
        w -= np.linalg.solve(hessian, gradient)
    return w


def test_regression_matches_newtons_method_on_the_same_objective():
    rng = np.random.RandomState(0)
    x = rng.normal(size=(300, 4)) * [1.0, 2.0, 0.5, 3.0] + [0, 1, 2, 3]
    y = (x @ [1.0, -0.5, 2.0, 0.2] + rng.normal(size=300) > 2.5).astype(int)
    predict = fit_logistic_regression(x, y, l2=3.0)
    # Two classes under a softmax are one logistic regression on the
    # difference of their scores; compare the decision function.
    z = (x - x.mean(0)) / (x.std(0) + 1e-8)
    w = _newton_binary_logistic_regression(z, y, l2=3.0 / 2)
    expected = (np.c_[z, np.ones(len(z))] @ w > 0).astype(int)
    # The same optimum up to L-BFGS's tolerance: a point on the boundary
    # at most may fall the other way.
    assert (predict(x) != expected).sum() <= 1
    assert 0.7 < (expected == y).mean() < 1.0


def test_probe_reads_a_fact_only_the_input_holds(preset, tmp_path):  # noqa: F811
    train = write_tsv(tmp_path / "train.tsv", cat_sentences(300, seed=1))
    evaluation = write_tsv(tmp_path / "eval.tsv", cat_sentences(100, seed=2))
    metrics = linear_probe(preset, str(train), str(evaluation), length=16)
    assert metrics["majority_accuracy"] == 0.5
    assert metrics["evaluation_examples"] == 100
    assert metrics["accuracy"] >= 0.8, metrics
    assert metrics["accuracy_interval"][0] > 0.5
    # Shuffled labels leave nothing to read: the probe drops to chance.
    rows = cat_sentences(300, seed=1)
    labels = np.random.RandomState(0).permutation([r[0] for r in rows])
    shuffled = write_tsv(
        tmp_path / "shuffled.tsv", list(zip(labels, [r[1] for r in rows]))
    )
    chance = linear_probe(preset, str(shuffled), str(evaluation), length=16)
    assert chance["accuracy"] < 0.65, chance
