"""`mixed_bfloat16` (what `--mixed-precision` sets) trains like float32."""

import keras
import numpy as np
import pytest

from tests.model_helpers import repeated_dataset
from tests.model_helpers import span_corruption_like_batch
from tests.model_helpers import tiny_model

STEPS_PER_EPOCH = 10
EPOCHS = 5  # 50 steps, across the switch at step 25


def _epoch_losses(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = tiny_model(tau=25)
        model.compile(optimizer=keras.optimizers.AdamW(3e-3))
        x, y = span_corruption_like_batch(batch_size=8, length=24, targets=8)
        history = model.fit(
            repeated_dataset(x, y),
            steps_per_epoch=STEPS_PER_EPOCH,
            epochs=EPOCHS,
            verbose=0,
        )
        compute_dtype = model.backbone.compute_dtype
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return history.history, compute_dtype


@pytest.mark.slow  # two 50-step fits
def test_bfloat16_losses_match_float32_over_50_steps():
    full, full_dtype = _epoch_losses("float32")
    mixed, mixed_dtype = _epoch_losses("mixed_bfloat16")
    assert (full_dtype, mixed_dtype) == ("float32", "bfloat16")
    for name in ("loss", "sc_loss"):
        assert np.all(np.isfinite(mixed[name])), mixed[name]
        # bf16 keeps 8 bits of mantissa: the same curve, within a few
        # percent, and it learns (the batch is memorised).
        np.testing.assert_allclose(
            mixed[name], full[name], rtol=0.05, atol=0.05
        )
    assert mixed["sc_loss"][-1] < 0.5 * mixed["sc_loss"][0]
    # Stage 1 metrics were recorded in bf16 as well (steps 0-24).
    assert np.isfinite(mixed["mlm_loss"][0]) and mixed["mlm_loss"][0] > 0
