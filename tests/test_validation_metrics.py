"""`validation_metrics` against the same measures computed in numpy from the
model's logits and encoder outputs."""

import numpy as np
import pytest
import tensorflow as tf

from keras_spactor.evaluation import validation_metrics
from tests.model_helpers import numpy
from tests.model_helpers import span_corruption_like_batch
from tests.model_helpers import tiny_model

BATCH_SIZE = 4


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def batches(num_batches=2):
    """Held-out batches `(x, y, sample_weight)`, with padded targets."""
    out = []
    for seed in range(num_batches):
        x, y = span_corruption_like_batch(batch_size=BATCH_SIZE, seed=seed)
        y[:, -2:] = 0  # padding, which carries no weight
        x["decoder_padding_mask"] = y != 0
        out.append((x, y, (y != 0).astype("float32")))
    return out


def numpy_sc_loss(model, batch):
    x, y, weights = batch
    logits = numpy(model(x)).astype("float64")
    logits -= logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    token_losses = -np.take_along_axis(log_probs, y[..., None], -1)[..., 0]
    return (token_losses * weights).sum() / weights.sum()


def with_encoder_of(batch, encoder_x):
    x, y, weights = batch
    x = dict(x)
    for key in ("encoder_token_ids", "encoder_padding_mask"):
        x[key] = encoder_x[key]
    return x, y, weights


def test_sc_loss_is_the_mean_token_cross_entropy(model):
    held_out = batches()
    metrics = validation_metrics(model, held_out)
    expected = np.mean([numpy_sc_loss(model, b) for b in held_out])
    np.testing.assert_allclose(metrics["validation_sc_loss"], expected, 1e-4)
    # The model's own trackers (what `fit` logs) are left alone.
    assert float(numpy(model.sc_loss_tracker.count)) == 0.0


def test_encoder_use_is_the_loss_with_the_previous_examples_encoder(model):
    held_out = batches()
    x = {k: np.concatenate([b[0][k] for b in held_out]) for k in held_out[0][0]}
    rolled = {k: np.roll(v, 1, axis=0) for k, v in x.items()}
    swapped = [
        with_encoder_of(
            b,
            {
                k: v[i * BATCH_SIZE : (i + 1) * BATCH_SIZE]
                for k, v in rolled.items()
            },
        )
        for i, b in enumerate(held_out)
    ]
    expected = np.mean([numpy_sc_loss(model, b) for b in swapped]) - np.mean(
        [numpy_sc_loss(model, b) for b in held_out]
    )
    metrics = validation_metrics(model, held_out)
    assert abs(metrics["encoder_use"]) > 1e-4
    np.testing.assert_allclose(metrics["encoder_use"], expected, 1e-3, 1e-6)


def test_encoder_use_is_zero_when_every_encoder_input_is_the_same(model):
    first = batches(1)[0]
    same = {
        k: np.repeat(v[:1], BATCH_SIZE, axis=0) for k, v in first[0].items()
    }
    metrics = validation_metrics(model, [with_encoder_of(first, same)])
    np.testing.assert_allclose(metrics["encoder_use"], 0.0, atol=1e-6)


def test_encoder_token_cosine_reads_the_first_batch(model):
    held_out = batches()
    x = held_out[0][0]
    hidden = numpy(model.backbone(x)["encoder_sequence_output"])
    tokens = hidden[x["encoder_padding_mask"]].astype("float64")
    mean = tokens.mean(0)
    cosines = tokens @ mean / np.linalg.norm(tokens, axis=1)
    expected = np.mean(cosines / np.linalg.norm(mean))
    metrics = validation_metrics(model, held_out)
    np.testing.assert_allclose(metrics["encoder_token_cosine"], expected, 1e-5)
    assert 0.0 < metrics["encoder_token_cosine"] < 1.0


def test_a_tf_data_dataset_and_steps(model):
    held_out = batches(3)
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(held_out),
        output_signature=tf.data.Dataset.from_tensors(held_out[0]).element_spec,
    )
    from_dataset = validation_metrics(model, dataset, steps=2)
    from_arrays = validation_metrics(model, held_out[:2])
    assert from_dataset == pytest.approx(from_arrays, rel=1e-6)
    assert from_dataset != pytest.approx(validation_metrics(model, held_out))


def test_an_empty_dataset_is_refused(model):
    with pytest.raises(ValueError, match="no batch"):
        validation_metrics(model, [])
