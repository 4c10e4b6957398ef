"""The hybrid objective: masking, sampling, labels and gradient routing."""

import keras
import numpy as np
import pytest

from tests import model_helpers as mh


def test_masked_positions_are_never_sentinel_eos_or_pad():
    model = mh.tiny_model()
    x, _ = mh.span_corruption_like_batch(batch_size=8)
    for _ in range(5):
        out = mh.generator_half(
            model,
            keras.ops.convert_to_tensor(x["encoder_token_ids"]),
            keras.ops.convert_to_tensor(x["encoder_padding_mask"]),
        )
        positions = keras.ops.convert_to_numpy(out["positions"])
        weights = keras.ops.convert_to_numpy(out["weights"])
        ids = x["encoder_token_ids"]
        for b in range(ids.shape[0]):
            used = positions[b][weights[b] > 0]
            assert len(set(used)) == len(used)
            tokens = ids[b, used]
            assert np.all(tokens >= 3), tokens
            assert np.all(tokens < mh.VOCABULARY_SIZE - 100), tokens
            eligible = np.sum(
                (ids[b] >= 3) & (ids[b] < mh.VOCABULARY_SIZE - 100)
            )
            assert len(used) == max(1, round(0.15 * eligible))


def test_rtd_labels_follow_electra_rule():
    model = mh.tiny_model()
    x, _ = mh.span_corruption_like_batch()
    ids = keras.ops.convert_to_tensor(x["encoder_token_ids"])
    mask = keras.ops.convert_to_tensor(x["encoder_padding_mask"])
    out = mh.generator_half(model, ids, mask)
    replaced = keras.ops.convert_to_numpy(out["replaced_token_ids"])
    labels = keras.ops.convert_to_numpy(out["is_replaced"])
    np.testing.assert_array_equal(labels, replaced != x["encoder_token_ids"])
    # Only masked positions may change.
    positions = keras.ops.convert_to_numpy(out["positions"])
    weights = keras.ops.convert_to_numpy(out["weights"])
    for b in range(replaced.shape[0]):
        untouched = np.ones(replaced.shape[1], bool)
        untouched[positions[b][weights[b] > 0]] = False
        assert not labels[b][untouched].any()

    # A generator that always samples the original token: every masked
    # position keeps its token and is labelled "original".
    same = np.full_like(x["encoder_token_ids"], 7)
    same[x["encoder_token_ids"] >= mh.VOCABULARY_SIZE - 100] = 199
    same[x["encoder_token_ids"] <= 1] = x["encoder_token_ids"][
        x["encoder_token_ids"] <= 1
    ]
    bias = np.full((mh.EMBEDDING_ROWS,), -1e4, "float32")
    bias[7] = 1e4
    model.generator_head.bias.assign(bias)
    out = mh.generator_half(model, keras.ops.convert_to_tensor(same), mask)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(out["replaced_token_ids"]), same
    )
    assert not keras.ops.convert_to_numpy(out["is_replaced"]).any()


def test_generator_gets_gradient_only_from_mlm_loss():
    model = mh.tiny_model(rtd_loss_weight=50.0, mlm_loss_weight=0.7)
    x, y = mh.span_corruption_like_batch()
    x = {k: keras.ops.convert_to_tensor(v) for k, v in x.items()}
    y = keras.ops.convert_to_tensor(y)
    generator_variables = [
        v for v in model.generator.trainable_variables
    ] + list(model.generator_head.trainable_variables)

    def total():
        return model.compute_losses(x, y, hybrid=True)[0]

    def mlm_only():
        stats = model.compute_losses(x, y, hybrid=True)[1]
        return model.mlm_loss_weight * stats["mlm_loss"]

    grads_total = mh.gradients(model, generator_variables, total)
    grads_mlm = mh.gradients(model, generator_variables, mlm_only)
    assert any(np.abs(g).max() > 0 for g in grads_mlm)
    for g_total, g_mlm in zip(grads_total, grads_mlm):
        np.testing.assert_allclose(g_total, g_mlm, rtol=1e-5, atol=1e-7)
    # The RTD loss does reach the shared embedding (through the encoder).
    embedding = [model.backbone.token_embedding.embeddings]

    def rtd_only():
        return model.compute_losses(x, y, hybrid=True)[1]["rtd_loss"]

    assert np.abs(mh.gradients(model, embedding, rtd_only)[0]).max() > 0


def test_stage_two_losses_do_not_run_generator():
    model = mh.tiny_model()
    x, y = mh.span_corruption_like_batch()
    seed_state = mh.numpy(model.masking_seed_state)
    _, outputs = model.compute_losses(x, y, hybrid=False)
    # No stage-1 term, and no mask or sample drawn.
    assert set(outputs) == {"loss", "sc_loss", "sc"}
    np.testing.assert_array_equal(
        mh.numpy(model.masking_seed_state), seed_state
    )
    assert float(outputs["loss"]) == pytest.approx(float(outputs["sc_loss"]))
    # The stage-1 trackers count no stage-2 step.
    model.reset_metrics()
    logs = model.update_metrics(outputs)
    for name in ("mlm_loss", "generator_accuracy", "rtd_loss", "rtd_accuracy"):
        assert float(logs[name]) == 0.0
    assert float(logs["sc_loss"]) == pytest.approx(float(outputs["sc_loss"]))


def test_accuracies_are_computed_by_the_metric_update():
    """The logged accuracies, against numpy, from `compute_losses`' logits."""
    model = mh.tiny_model()
    x, y = mh.span_corruption_like_batch()
    _, outputs = model.compute_losses(x, y, hybrid=True)
    model.reset_metrics()
    logs = model.update_metrics(outputs)

    def accuracy(scored, predictions):
        weights = mh.numpy(scored.weights).astype("float32")
        right = predictions == mh.numpy(scored.labels)
        return float((right * weights).sum() / max(weights.sum(), 1.0))

    for term, name in (("sc", "sc_accuracy"), ("mlm", "generator_accuracy")):
        scored = outputs[term]
        expected = accuracy(scored, mh.numpy(scored.logits).argmax(-1))
        assert float(logs[name]) == pytest.approx(expected, abs=1e-6)
    rtd = outputs["rtd"]
    expected = accuracy(rtd, (mh.numpy(rtd.logits) > 0).astype("float32"))
    assert float(logs["rtd_accuracy"]) == pytest.approx(expected, abs=1e-6)
    for name in ("loss", "sc_loss", "mlm_loss", "rtd_loss"):
        assert float(logs[name]) == pytest.approx(float(outputs[name]))


def test_default_generator_shares_the_backbone_head_geometry():
    import keras_hub

    import keras_spactor

    # T5 v1.1 small-like: heads of 8 in a 32-wide model with 3 heads.
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=mh.EMBEDDING_ROWS,
        num_layers=4,
        num_heads=3,
        hidden_dim=32,
        intermediate_dim=64,
        key_value_dim=8,
        dropout=0.0,
        tie_embedding_weights=False,
    )
    model = keras_spactor.SpacTorT5(
        backbone, vocabulary_size=mh.VOCABULARY_SIZE
    )
    assert model.generator.num_layers == 1  # max(1, 4 // 4)
    assert model.generator.key_value_dim == 8
    query = model.generator.transformer_layers[0].self_attention.query_projector
    assert tuple(query.kernel.shape) == (32, 24)


def test_generator_never_samples_special_or_unused_ids():
    """A generator that prefers sentinels, EOS, pad, the mask id and unused
    rows still writes only ordinary pieces into the encoder input."""
    model = mh.tiny_model()
    x, _ = mh.span_corruption_like_batch(batch_size=8)
    first_sentinel = mh.VOCABULARY_SIZE - model.num_sentinels
    special = np.zeros((mh.EMBEDDING_ROWS,), bool)
    special[first_sentinel:] = True  # sentinels and unused rows
    special[[model.pad_token_id, model.eos_token_id, model.mask_token_id]] = 1
    bias = np.where(special, 1e4, 0.0).astype("float32")
    model.generator_head.bias.assign(bias)
    ids = keras.ops.convert_to_tensor(x["encoder_token_ids"])
    mask = keras.ops.convert_to_tensor(x["encoder_padding_mask"])
    for _ in range(3):
        out = mh.generator_half(model, ids, mask)
        replaced = keras.ops.convert_to_numpy(out["replaced_token_ids"])
        written = replaced[replaced != x["encoder_token_ids"]]
        assert written.size > 0
        assert not special[written].any(), written[special[written]]
        # Sentinels, EOS and padding are exactly where they were.
        kept = special[x["encoder_token_ids"]]
        np.testing.assert_array_equal(
            replaced[kept], x["encoder_token_ids"][kept]
        )
        # The MLM softmax has the same support: its loss stays finite and
        # puts no probability on the special ids.
        logits = keras.ops.convert_to_numpy(out["logits"])
        probabilities = np.exp(logits - logits.max(-1, keepdims=True))
        probabilities /= probabilities.sum(-1, keepdims=True)
        assert probabilities[..., special].max() < 1e-6


def test_rtd_positions_and_mask_rate_are_validated_and_saved():
    backbone = mh.tiny_backbone()
    with pytest.raises(ValueError, match="rtd_positions"):
        mh.tiny_model(rtd_positions="some", backbone=backbone)
    with pytest.raises(ValueError, match="mask_replacement_rate"):
        mh.tiny_model(mask_replacement_rate=0.0, backbone=backbone)
    model = mh.tiny_model(
        rtd_positions="all", mask_replacement_rate=0.85, backbone=backbone
    )
    config = model.get_config()
    assert config["rtd_positions"] == "all"
    assert config["mask_replacement_rate"] == 0.85


def test_rtd_over_all_positions_adds_never_replaced_tokens():
    """ELECTRA's choice: sentinels and EOS count as "original" too, so the
    RTD loss is the eligible-only loss diluted by easy positions."""
    x, y = mh.span_corruption_like_batch()
    losses, backbone = {}, mh.tiny_backbone()
    for positions in ("eligible", "all"):
        model = mh.tiny_model(
            seed=4, rtd_positions=positions, backbone=backbone
        )
        losses[positions] = model.compute_losses(x, y, hybrid=True)[1]
    assert float(losses["all"]["rtd_loss"]) != pytest.approx(
        float(losses["eligible"]["rtd_loss"]), rel=1e-3
    )
    # Same seed, same samples: the SC loss is unaffected by the choice.
    assert float(losses["all"]["sc_loss"]) == pytest.approx(
        float(losses["eligible"]["sc_loss"]), rel=1e-5
    )


@pytest.mark.parametrize("block_size", [16, 40, 128])
def test_generator_samples_follow_its_softmax(block_size):
    """`sample_by_inverse_cdf` against NumPy's softmax: the frequencies of
    20,000 draws per row, pieces of probability 0 never drawn, and a row
    with one possible piece (the first, the last) always gives it. Over
    40 pieces: three blocks, the last padded; one block exactly; one
    block, padded."""
    from keras_spactor.models.generator_masking import sample_by_inverse_cdf

    rng = np.random.RandomState(0)
    rows, pieces, draws = 3, 40, 20_000
    logits = rng.normal(0.0, 1.5, (rows, pieces)).astype("float32")
    logits[:, ::7] = -1e9  # pieces 0, 7, ... are never drawable
    one_piece = np.full((2, pieces), -1e9, "float32")
    one_piece[0, 0] = one_piece[1, -1] = 0.0
    logits = np.concatenate([logits, one_piece])
    batch = np.broadcast_to(logits, (draws,) + logits.shape)
    seed = keras.random.SeedGenerator(3)
    drawn = mh.numpy(sample_by_inverse_cdf(batch, seed, block_size))
    assert drawn.shape == (draws, rows + 2)
    np.testing.assert_array_equal(drawn[:, rows:], [[0, pieces - 1]] * draws)
    expected = np.exp(logits[:rows] - logits[:rows].max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    for row in range(rows):
        frequencies = np.bincount(drawn[:, row], minlength=pieces) / draws
        assert frequencies[::7].sum() == 0
        # 5 binomial standard errors, so a shift by one piece fails.
        error = np.sqrt(expected[row] * (1 - expected[row]) / draws)
        assert np.all(np.abs(frequencies - expected[row]) <= 5 * error + 1e-3)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_replacements_follow_softmax_of_logits_over_temperature(temperature):
    """`sample_replacements` draws from `softmax(logits / temperature)`
    (NumPy's), writing the draw at the masked slot only."""
    from keras_spactor.models.generator_masking import MaskedInputs

    model = mh.tiny_model(sampling_temperature=temperature)
    draws = 10_000
    row = np.full(mh.EMBEDDING_ROWS, -1e9, "float32")
    row[[5, 6, 7, 8]] = [0.0, 0.5, 1.0, 2.0]
    logits = np.broadcast_to(row, (draws, 1, mh.EMBEDDING_ROWS))
    token_ids = np.full((draws, 3), 4, "int32")
    masked = MaskedInputs(
        token_ids=token_ids,
        eligible=np.ones((draws, 3), bool),
        positions=np.ones((draws, 1), "int32"),
        weights=np.ones((draws, 1), "float32"),
    )
    replaced = mh.numpy(model.sample_replacements(token_ids, masked, logits))
    np.testing.assert_array_equal(replaced[:, [0, 2]], 4)
    expected = np.exp(row[5:9] / temperature)
    expected /= expected.sum()
    counts = np.bincount(replaced[:, 1], minlength=9)
    assert counts[5:9].sum() == draws  # nothing else was drawn
    frequencies = counts[5:9] / draws
    error = np.sqrt(expected * (1 - expected) / draws)
    assert np.all(np.abs(frequencies - expected) <= 5 * error), (
        frequencies,
        expected,
    )
