"""`TrainingProgress`: tokens, FLOPs per stage and learning rate in the logs."""

import keras
import pytest

from keras_spactor.callbacks import TrainingProgress
from keras_spactor.flops import train_step_flops
from tests.model_helpers import repeated_dataset
from tests.model_helpers import span_corruption_like_batch
from tests.model_helpers import tiny_model


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


class BatchLogs(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.batches = []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append(dict(logs))

    def on_epoch_end(self, epoch, logs=None):
        self.epoch = dict(logs)


PEAK = 1e6


@pytest.fixture(scope="module")
def two_fits():
    """Two 3-step fits of a tau=2 model (shared by the tests below), with
    a clock that reads 2 s more at each reading and a peak of 1 MFLOP/s."""
    from keras_spactor.callbacks import training_progress

    clock = iter(range(0, 1000, 2))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training_progress, "_now", lambda: next(clock))
        model = tiny_model(tau=2)
        schedule = keras.optimizers.schedules.PolynomialDecay(1e-3, 10, 1e-4)
        model.compile(optimizer=keras.optimizers.AdamW(schedule))
        x, y = span_corruption_like_batch(batch_size=4, length=24, targets=8)
        progress = TrainingProgress.for_model(
            model, 4, 24, targets_length=8, peak_flops_per_second=PEAK
        )
        fits = [BatchLogs(), BatchLogs()]
        for logs in fits:  # the count carries over fit calls
            model.fit(
                repeated_dataset(x, y),
                steps_per_epoch=3,
                epochs=1,
                callbacks=[progress, logs],
                verbose=0,
            )
    hybrid = train_step_flops(model, 4, 24, 8, hybrid=True)
    sc = train_step_flops(model, 4, 24, 8, hybrid=False)
    return fits, schedule, hybrid, sc


def test_logs_count_each_stage_and_follow_the_schedule(two_fits):
    fits, schedule, hybrid, sc = two_fits
    last = fits[1].epoch
    # tau=2: two hybrid steps, then four SC steps.
    assert last["train_flops"] == 2 * hybrid + 4 * sc
    assert last["tokens_seen"] == 6 * 4 * 24
    assert last["learning_rate"] == pytest.approx(
        float(keras.ops.convert_to_numpy(schedule(6))), rel=1e-6
    )


def test_mfu_is_counted_flops_per_second_over_the_peak(two_fits):
    fits, _, hybrid, sc = two_fits
    # The first batch of a fit (it may compile) is not timed; then 2 s
    # per batch: step 1 is hybrid, steps 2 and on are SC.
    for logs, timed in zip(fits, ([hybrid, sc], [sc, sc])):
        assert "mfu" not in logs.batches[0]
        assert [b["mfu"] for b in logs.batches[1:]] == pytest.approx(
            [flops / 2 / PEAK for flops in timed]
        )
        assert logs.epoch["mfu"] == pytest.approx(sum(timed) / 4 / PEAK)


def test_no_mfu_without_a_peak_and_a_peak_must_be_positive():
    model = tiny_model(tau=2)
    assert (
        TrainingProgress.for_model(model, 4, 24).peak_flops_per_second is None
    )
    with pytest.raises(ValueError, match="peak_flops_per_second"):
        TrainingProgress(1, 1, 1, peak_flops_per_second=0)
