"""A resumed input stream continues exactly, without reading its past."""

import json

import numpy as np
import pytest

from keras_spactor.data.pretraining_dataset import pretraining_dataset
from keras_spactor.data.resumable_batches import ResumableBatches
from keras_spactor.data.sources import DocumentStats

SAVE_EVERY = 4


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two small JSONL files (one gzip-free, one gzipped), read over and
    over: the stream's position lies inside the files, the shuffle buffers
    and the repetitions."""
    import gzip

    root = tmp_path_factory.mktemp("corpus")
    words = "the a cat dog sat ran on under mat log quickly slowly".split()
    rng = np.random.RandomState(0)
    lines = [
        json.dumps({"text": " ".join(rng.choice(words, 30))}) + "\n"
        for _ in range(60)
    ]
    (root / "a.jsonl").write_text("".join(lines[:30]))
    with gzip.open(root / "b.jsonl.gz", "wt") as f:
        f.write("".join(lines[30:]))
    return [str(root / "a.jsonl"), str(root / "b.jsonl.gz")]


def _stream(corpus, tokenizer, stats=None):
    return pretraining_dataset(
        corpus,
        tokenizer,
        batch_size=16,
        inputs_length=32,
        seed=5,
        shuffle_buffer=16,
        stats=stats,
    )


def _targets(generator, count):
    return [next(generator)[1] for _ in range(count)]


def test_resume_continues_the_stream_exactly(corpus, data_tokenizer, tmp_path):
    reference_stats = DocumentStats()
    reference = _stream(corpus, data_tokenizer, reference_stats)
    reference = reference.as_numpy_iterator()
    expected = [next(reference)[1] for _ in range(32)]

    first = ResumableBatches(
        _stream(corpus, data_tokenizer), str(tmp_path), SAVE_EVERY
    )
    batches = first.batches()
    for want, got in zip(expected, _targets(batches, 25)):
        np.testing.assert_array_equal(got, want)
    # Positions saved before batches 0, 4, ..., 24.
    assert first.saved_steps() == list(range(0, 25, SAVE_EVERY))

    stats = DocumentStats()
    resumed = ResumableBatches(
        _stream(corpus, data_tokenizer, stats), str(tmp_path), SAVE_EVERY
    )
    assert resumed.resume(24) == 0
    for want, got in zip(expected[24:], _targets(resumed.batches(), 8)):
        np.testing.assert_array_equal(got, want)
    # The restored stream reads what its 8 batches need, not the documents
    # of the 24 before them again (128-document groups: 3 vs 1 or 2).
    assert stats.documents * 2 < reference_stats.documents


def test_resume_between_saved_positions_reads_only_the_gap(
    corpus, data_tokenizer, tmp_path
):
    reference = _stream(corpus, data_tokenizer).as_numpy_iterator()
    expected = [next(reference)[1] for _ in range(12)]
    first = ResumableBatches(
        _stream(corpus, data_tokenizer), str(tmp_path), SAVE_EVERY
    )
    _targets(first.batches(), 9)

    resumed = ResumableBatches(
        _stream(corpus, data_tokenizer), str(tmp_path), SAVE_EVERY
    )
    assert resumed.resume(10) == 2  # from the position of step 8
    np.testing.assert_array_equal(
        _targets(resumed.batches(), 1)[0], expected[10]
    )

    # No saved position at all (a run of an earlier version): read it all.
    fresh = ResumableBatches(
        _stream(corpus, data_tokenizer), str(tmp_path / "none"), SAVE_EVERY
    )
    assert fresh.resume(3) == 3
    np.testing.assert_array_equal(_targets(fresh.batches(), 1)[0], expected[3])


def test_only_the_positions_checkpoints_need_are_kept(
    corpus, data_tokenizer, tmp_path
):
    stream = ResumableBatches(
        _stream(corpus, data_tokenizer), str(tmp_path), SAVE_EVERY
    )
    _targets(stream.batches(), 13)
    assert stream.saved_steps() == [0, 4, 8, 12]
    stream.keep([4, 8])  # checkpoints at 4 and 8; 12 is ahead of them
    assert stream.saved_steps() == [4, 8, 12]
    stream.discard_after(8)
    assert stream.saved_steps() == [4, 8]
    # Asked before checkpointing step 16 while the stream stands there.
    _targets(stream.batches(), 3)
    assert stream.position == 16
    stream.save_position(16)
    assert stream.saved_steps() == [4, 8, 16]


def test_a_source_that_cannot_be_saved_still_trains_and_resumes(tmp_path):
    import tensorflow as tf

    def numbers():
        return tf.data.Dataset.from_generator(
            lambda: iter(range(40)), output_signature=tf.TensorSpec([], "int64")
        ).batch(2)

    stream = ResumableBatches(numbers(), str(tmp_path), SAVE_EVERY)
    with pytest.warns(UserWarning, match="cannot be saved"):
        first = [next(stream.batches()).tolist() for _ in range(6)]
    assert first == [[2 * i, 2 * i + 1] for i in range(6)]
    # Only the position before anything was read could be saved.
    assert not stream.saving and stream.saved_steps() == [0]

    resumed = ResumableBatches(numbers(), str(tmp_path), SAVE_EVERY)
    assert resumed.resume(5) == 5  # from step 0's position
    assert next(resumed.batches()).tolist() == [10, 11]


def test_a_damaged_saved_position_is_named(corpus, data_tokenizer, tmp_path):
    stream = ResumableBatches(
        _stream(corpus, data_tokenizer), str(tmp_path), SAVE_EVERY
    )
    _targets(stream.batches(), 5)
    state = tmp_path / "step-4"
    for path in state.iterdir():
        if path.name.startswith("state.data"):
            path.write_bytes(path.read_bytes()[:100])  # truncated
    resumed = ResumableBatches(
        _stream(corpus, data_tokenizer), str(tmp_path), SAVE_EVERY
    )
    with pytest.raises(ValueError, match="step-4 cannot be read"):
        resumed.resume(4)


def test_save_every_must_be_positive(corpus, data_tokenizer, tmp_path):
    with pytest.raises(ValueError, match="save_every"):
        ResumableBatches(_stream(corpus, data_tokenizer), str(tmp_path), 0)
