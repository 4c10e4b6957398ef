import numpy as np
import pytest
import tensorflow as tf

from keras_spactor.data.span_corruption import random_spans_noise_mask
from keras_spactor.data.span_corruption import span_corruption
from keras_spactor.data.span_corruption import span_corruption_lengths

VOCAB = 1000


def _brute_force_lengths(inputs_length, density, mean):
    def lengths(t):
        noise = int(np.round(t * density))
        spans = int(np.round(noise / mean))
        return t - noise + spans + 1, noise + spans + 1

    best = max(
        t for t in range(1, 4 * inputs_length) if lengths(t)[0] <= inputs_length
    )
    targets = lengths(best)[1]
    if density == 0.5 and targets > inputs_length:
        best, targets = best - 1, targets - 1
    return best, targets


@pytest.mark.parametrize(
    "inputs_length, expected",
    [
        (512, (568, 114)),
        (128, (141, 29)),
        (256, (284, 58)),
        (1024, (1137, 229)),
    ],
)
def test_lengths_known_values(inputs_length, expected):
    assert span_corruption_lengths(inputs_length) == expected


@pytest.mark.parametrize("density, mean", [(0.15, 3.0), (0.3, 2.0), (0.5, 5.0)])
def test_lengths_match_brute_force(density, mean):
    for inputs_length in list(range(2, 80)) + [128, 333, 512, 1024]:
        assert span_corruption_lengths(
            inputs_length, density, mean
        ) == _brute_force_lengths(inputs_length, density, mean), inputs_length


def _reference_mask(length, density, mean, seed):
    """numpy re-implementation; only the uniform draws come from TF."""
    n = max(length, 2)
    num_noise = min(max(int(np.round(n * density)), 1), n - 1)
    num_spans = max(min(int(np.round(num_noise / mean)), n - num_noise), 1)
    seeds = tf.random.experimental.stateless_split(
        tf.constant(seed, tf.int64), 2
    ).numpy()

    def segment_lengths(num_items, s):
        first = (np.arange(num_items - 1) < num_spans - 1).astype(int)
        draws = tf.random.stateless_uniform([num_items - 1], s).numpy()
        first = np.concatenate([[1], first[np.argsort(draws, kind="stable")]])
        return np.bincount(np.cumsum(first))[1:]

    noise = segment_lengths(num_noise, seeds[0])
    nonnoise = segment_lengths(n - num_noise, seeds[1])
    mask = np.concatenate(
        [np.repeat([False, True], [a, b]) for a, b in zip(nonnoise, noise)]
    )
    return mask[:length], num_noise, num_spans


def _runs(mask, value):
    padded = np.concatenate([[not value], mask, [not value]])
    starts = np.flatnonzero((padded[1:-1] == value) & (padded[:-2] != value))
    return len(starts)


@pytest.mark.parametrize("density, mean", [(0.15, 3.0), (0.5, 2.0)])
def test_noise_mask_matches_numpy_reference(density, mean):
    for length in list(range(2, 11)) + [17, 50, 141, 568]:
        for s in range(3):
            seed = (s, length)
            mask = random_spans_noise_mask(length, density, mean, seed).numpy()
            expected, num_noise, num_spans = _reference_mask(
                length, density, mean, seed
            )
            np.testing.assert_array_equal(mask, expected)
            assert mask.sum() == num_noise
            assert not mask[0] and mask[-1]
            # Every span is non-empty: exactly num_spans runs of each kind.
            assert _runs(mask, True) == num_spans
            assert _runs(mask, False) == num_spans


def test_noise_mask_tiny_lengths():
    assert random_spans_noise_mask(0, seed=(1, 2)).shape == (0,)
    assert random_spans_noise_mask(1, seed=(1, 2)).numpy().tolist() == [False]
    assert random_spans_noise_mask(2, seed=(1, 2)).numpy().tolist() == [
        False,
        True,
    ]


def test_noise_mask_dynamic_length_in_graph():
    @tf.function(input_signature=[tf.TensorSpec([], tf.int32)])
    def mask_fn(length):
        return random_spans_noise_mask(length, seed=(3, 4))

    for length in (5, 60, 141):
        np.testing.assert_array_equal(
            mask_fn(length).numpy(),
            random_spans_noise_mask(length, seed=(3, 4)).numpy(),
        )


def test_noise_mask_determinism_and_seed_sensitivity():
    a = random_spans_noise_mask(568, seed=(7, 8)).numpy()
    b = random_spans_noise_mask(568, seed=(7, 8)).numpy()
    c = random_spans_noise_mask(568, seed=(7, 9)).numpy()
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def _reconstruct(inputs, targets, vocabulary_size):
    """Interleaves inputs and targets by their sentinels."""
    first_sentinel = vocabulary_size - 1

    def spans(ids):
        result, current, key = {}, [], None
        for t in ids[:-1]:  # drop EOS
            if t > first_sentinel - 100:
                if key is not None:
                    result[key] = current
                key, current = t, []
            else:
                current.append(t)
        if key is not None:
            result[key] = current
        return result

    filler = spans(targets)
    out = []
    for t in inputs[:-1]:
        out.extend(filler[t] if t > first_sentinel - 100 else [t])
    return out, filler


def test_span_corruption_structure():
    tokens = tf.range(3, 203, dtype=tf.int32)
    out = span_corruption(tokens, VOCAB, seed=(1, 2))
    inputs, targets = out["inputs"].numpy(), out["targets"].numpy()
    assert inputs[-1] == 1 and targets[-1] == 1
    recovered, _ = _reconstruct(inputs, targets, VOCAB)
    assert recovered == list(range(3, 203))
    sentinels = inputs[inputs >= VOCAB - 100]
    np.testing.assert_array_equal(
        sentinels, np.arange(VOCAB - 1, VOCAB - 1 - len(sentinels), -1)
    )
    target_sentinels = targets[targets >= VOCAB - 100]
    np.testing.assert_array_equal(sentinels, target_sentinels)
    # The mask starts with non-noise: targets start with the first sentinel.
    assert targets[0] == VOCAB - 1


def test_span_corruption_in_dataset_map():
    ds = tf.data.Dataset.from_tensor_slices(
        tf.reshape(tf.range(3, 63, dtype=tf.int32), [3, 20])
    ).map(lambda t: span_corruption(t, VOCAB, seed=(5, 6)))
    for i, out in enumerate(ds):
        recovered, _ = _reconstruct(
            out["inputs"].numpy(), out["targets"].numpy(), VOCAB
        )
        assert recovered == list(range(3 + 20 * i, 23 + 20 * i))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"noise_density": 0.0},
        {"noise_density": 1.0},
        {"noise_density": -0.1},
        {"mean_noise_span_length": 0.5},
    ],
)
def test_invalid_noise_arguments(kwargs):
    with pytest.raises(ValueError):
        span_corruption_lengths(128, **kwargs)
    with pytest.raises(ValueError):
        random_spans_noise_mask(10, seed=(0, 0), **kwargs)


def test_invalid_inputs_length():
    with pytest.raises(ValueError, match="inputs_length"):
        span_corruption_lengths(1)
