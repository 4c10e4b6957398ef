import gzip
import json
import re

import pytest
import tensorflow_datasets as tfds

from keras_spactor.data.builtin_corpus import builtin_corpus_documents
from keras_spactor.data.sources import DocumentStats
from keras_spactor.data.sources import check_source
from keras_spactor.data.sources import iter_documents
from keras_spactor.data.sources import iter_file_documents
from keras_spactor.data.sources import text_dataset


def _read(ds):
    return [t.decode("utf-8") for t in ds.as_numpy_iterator()]


def _write_jsonl(path, texts, compress=False):
    lines = "".join(json.dumps({"text": t}) + "\n" for t in texts).encode()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(lines)
    else:
        path.write_bytes(lines)


def test_jsonl_gzip_and_text_files(tmp_path):
    _write_jsonl(tmp_path / "a.jsonl", ["one", "two"])
    _write_jsonl(tmp_path / "b.jsonl.gz", ["three"], compress=True)
    (tmp_path / "c.txt").write_text("four\nfive\n")
    files = [tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz", tmp_path / "c.txt"]
    assert _read(text_dataset(files)) == ["one", "two", "three", "four", "five"]
    assert _read(text_dataset(str(tmp_path / "*.jsonl*"))) == [
        "one",
        "two",
        "three",
    ]


def test_directory_picks_split_files(tmp_path):
    _write_jsonl(tmp_path / "docs.train.jsonl", ["t"])
    _write_jsonl(tmp_path / "docs.validation.jsonl", ["v"])
    assert _read(text_dataset(str(tmp_path), split="validation")) == ["v"]
    assert _read(text_dataset(str(tmp_path), split="train")) == ["t"]


def test_empty_documents_skipped_and_counted(tmp_path):
    _write_jsonl(tmp_path / "a.jsonl", ["x", "", "  \n\t", "\u00a0\u3000", "y"])
    (tmp_path / "b.txt").write_text("z\n\n   \n")
    stats = DocumentStats()
    ds = text_dataset([tmp_path / "a.jsonl", tmp_path / "b.txt"], stats=stats)
    assert _read(ds) == ["x", "y", "z"]
    assert stats.skipped_empty == 5
    assert stats.documents == 8


def test_invalid_utf8_is_replaced(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b'{"text": "caf\xc3\xa9 \xff\xfe!"}\n')
    (tmp_path / "b.txt").write_bytes(b"bad \x80 byte\n")
    files = [tmp_path / "a.jsonl", tmp_path / "b.txt"]
    assert _read(text_dataset(files)) == [
        "caf\u00e9 \ufffd\ufffd!",
        "bad \ufffd byte",
    ]


def test_tf_data_reader_reads_what_the_python_reader_reads(tmp_path):
    # Checkpointable reading (tf.data) against the plain Python reader:
    # several files, more lines than one parse batch, CRLF and blank lines.
    texts = [f"doc {i} " + "word " * (i % 7) for i in range(600)]
    texts[10] = ""
    _write_jsonl(tmp_path / "a.jsonl.gz", texts[:300], compress=True)
    _write_jsonl(tmp_path / "b.jsonl", texts[300:])
    (tmp_path / "c.txt").write_bytes(b"dos line\r\n\nunix line\nlast")
    files = [str(tmp_path / n) for n in ("a.jsonl.gz", "b.jsonl", "c.txt")]
    expected = [t for t in iter_file_documents(files) if t.strip()]
    assert len(expected) == 599 + 3
    assert _read(text_dataset(files)) == expected


@pytest.mark.parametrize(
    "bad_line, message",
    [("not json", "not valid JSON"), ('{"title": "x"}', 'no "text" field')],
)
def test_bad_jsonl_line_names_file_and_line(tmp_path, bad_line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"text": "ok"}\n' + bad_line + "\n")
    with pytest.raises(ValueError, match=rf"bad\.jsonl, line 3: .*{message}"):
        text_dataset(str(path))
    # Without the eager check, the error still names the file and line.
    ds = text_dataset(str(path), validate=False)
    with pytest.raises(Exception, match=r"bad\.jsonl, line 3"):
        _read(ds)


def test_missing_file_is_named(tmp_path):
    missing = str(tmp_path / "nope.jsonl")
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        text_dataset(missing)
    with pytest.raises(FileNotFoundError, match=r"\*\.jsonl"):
        text_dataset(str(tmp_path / "*.jsonl"))


def test_comma_separated_files(tmp_path):
    _write_jsonl(tmp_path / "a.jsonl", ["one", "two"])
    _write_jsonl(tmp_path / "b.jsonl.gz", ["three"], compress=True)
    (tmp_path / "c.txt").write_text("four\n")
    # The way `keras-spactor pretrain --data` passes it: one string.
    spec = f"{tmp_path / 'a.jsonl'}, {tmp_path / '*.gz'},{tmp_path / 'c.txt'}"
    check_source(spec)
    assert _read(text_dataset(spec)) == ["one", "two", "three", "four"]
    assert list(iter_documents(spec)) == ["one", "two", "three", "four"]
    # A file whose own name has a comma is still one file.
    _write_jsonl(tmp_path / "d,e.jsonl", ["five"])
    assert _read(text_dataset(str(tmp_path / "d,e.jsonl"))) == ["five"]


def test_comma_separated_checks_name_the_bad_part(tmp_path):
    _write_jsonl(tmp_path / "a.jsonl", ["one"])
    good = str(tmp_path / "a.jsonl")
    for missing in ("nope.jsonl", "*.txt"):
        spec = f"{good},{tmp_path / missing}"
        with pytest.raises(FileNotFoundError, match=re.escape(missing)):
            check_source(spec)
        with pytest.raises(FileNotFoundError, match=re.escape(missing)):
            text_dataset(spec)
    with pytest.raises(ValueError, match="cannot be listed with others"):
        check_source(f"builtin:python-docs,{good}")
    with pytest.raises(ValueError, match="cannot be listed with others"):
        text_dataset(f"{good},tfds:c4/en")
    with pytest.raises(ValueError, match="Unknown builtin corpus"):
        check_source("builtin:nope")
    check_source("builtin:python-docs")
    check_source("tfds:c4/en")  # left to TFDS, which may need the network


def test_unknown_specs(tmp_path):
    with pytest.raises(ValueError, match="Unknown builtin corpus"):
        text_dataset("builtin:nope")
    (tmp_path / "a.csv").write_text("x\n")
    with pytest.raises(ValueError, match="Unknown text file format"):
        text_dataset(str(tmp_path / "a.csv"))


def test_tfds_source_reads_text_feature():
    # TFDS's own mock runs the real `tfds.load` reading code offline.
    with tfds.testing.mock_data(num_examples=6):
        stats = DocumentStats()
        texts = _read(text_dataset("tfds:c4/en", "validation", stats=stats))
        assert len(texts) == 6 and all(texts)
        assert stats.documents == 6
        assert len(list(iter_documents("tfds:c4/en", "train"))) == 6


def test_builtin_corpus_split_and_determinism():
    train = builtin_corpus_documents("train")
    validation = builtin_corpus_documents("validation")
    assert train == builtin_corpus_documents("train")
    assert not set(train) & set(validation)
    assert 0.02 < len(validation) / (len(train) + len(validation)) < 0.10
    words = [len(d.split()) for d in train]
    assert len(train) > 200 and max(words) <= 600
    assert sorted(words)[len(words) // 2] >= 200
    assert _read(text_dataset("builtin:python-docs", "validation")) == (
        validation
    )
    with pytest.raises(ValueError, match="split"):
        builtin_corpus_documents("test")
