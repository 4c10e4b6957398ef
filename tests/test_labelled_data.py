"""`read_labelled`: one reader for TSV paths, shipped examples and TFDS."""

import pytest

from keras_spactor.data import examples
from keras_spactor.labelled_data import labelled_file
from keras_spactor.labelled_data import read_labelled
from keras_spactor.labelled_data import read_labelled_tsv


def test_builtin_and_path_read_the_same_file(tmp_path):
    path = examples.labelled_tsv("sentiment-tiny", "validation")
    from_path = read_labelled(path, "train")  # a path is read whole
    assert read_labelled("builtin:sentiment-tiny", "validation") == from_path
    # A split named in the spec wins over the default one.
    assert read_labelled("builtin:sentiment-tiny:validation", "train") == (
        from_path
    )
    all_labels, all_texts = read_labelled("builtin:sentiment-tiny", "train")
    labels, texts = read_labelled("builtin:sentiment-tiny", "train", 5)
    assert (labels, texts) == (all_labels[:5], all_texts[:5])
    assert len(all_texts) == 40 and not set(all_texts) & set(from_path[1])


def test_tfds_reads_what_the_cli_writes(tmp_path):
    import tensorflow_datasets as tfds

    # TFDS's mock runs the real `tfds.load` code offline, with random text.
    with tfds.testing.mock_data(num_examples=6):
        labels, texts = read_labelled("tfds:glue/sst2", "validation")
        path = labelled_file("tfds:glue/sst2", "validation", str(tmp_path))
        assert (labels, texts) == read_labelled_tsv(path)
        assert len(labels) == 6 and set(labels) <= {"negative", "positive"}
        assert all(texts) and not any("\t" in t or "\n" in t for t in texts)
        two, _ = read_labelled("tfds:glue/sst2:validation", "train", 2)
        assert two == labels[:2]


def test_bad_specs_name_the_problem():
    with pytest.raises(ValueError, match="Unknown example data set"):
        read_labelled("builtin:no-such-set", "train")
    with pytest.raises(ValueError, match="expected tfds:NAME"):
        read_labelled("tfds:", "train")
    with pytest.raises(FileNotFoundError, match="no/such.tsv"):
        read_labelled("no/such.tsv", "train")
