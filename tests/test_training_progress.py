"""`TrainingProgress`: tokens, FLOPs per stage and learning rate in the logs."""

import keras
import pytest

from keras_spactor.callbacks import TrainingProgress
from keras_spactor.flops import train_step_flops
from tests.model_helpers import repeated_dataset
from tests.model_helpers import span_corruption_like_batch
from tests.model_helpers import tiny_model


class LastLogs(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        self.logs = dict(logs)


def test_for_model_uses_the_pipelines_targets_length():
    model = tiny_model(tau=2)
    progress = TrainingProgress.for_model(model, 8, 128)
    # seqio's arithmetic: 128 encoder tokens come with 29 targets.
    assert progress.tokens_per_step == 8 * 128
    assert progress.hybrid_step_flops == train_step_flops(
        model, 8, 128, 29, hybrid=True
    )
    assert progress.sc_step_flops == train_step_flops(
        model, 8, 128, 29, hybrid=False
    )
    assert progress.hybrid_step_flops > progress.sc_step_flops


def test_logs_count_each_stage_and_follow_the_schedule():
    model = tiny_model(tau=2)
    schedule = keras.optimizers.schedules.PolynomialDecay(1e-3, 10, 1e-4)
    model.compile(optimizer=keras.optimizers.AdamW(schedule))
    x, y = span_corruption_like_batch(batch_size=4, length=24, targets=8)
    progress = TrainingProgress.for_model(model, 4, 24, targets_length=8)
    last = LastLogs()
    for _ in range(2):  # the count carries over fit calls
        model.fit(
            repeated_dataset(x, y),
            steps_per_epoch=3,
            epochs=1,
            callbacks=[progress, last],
            verbose=0,
        )
    # tau=2: two hybrid steps, then four SC steps.
    hybrid = train_step_flops(model, 4, 24, 8, hybrid=True)
    sc = train_step_flops(model, 4, 24, 8, hybrid=False)
    assert last.logs["train_flops"] == 2 * hybrid + 4 * sc
    assert last.logs["tokens_seen"] == 6 * 4 * 24
    assert last.logs["learning_rate"] == pytest.approx(
        float(keras.ops.convert_to_numpy(schedule(6))), rel=1e-6
    )
