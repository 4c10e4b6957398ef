"""File operations on local paths and on `tf.io.gfile` URLs (`gs://`, ...).

A path with a scheme (`gs://bucket/run`, `ram://x`, `s3://...`) goes
through `tf.io.gfile`, which TensorFlow serves for Google Cloud Storage and
its other file systems; any other path through `os`, `shutil` and `open`,
exactly as the package did before, and without importing TensorFlow (a
JAX user without it still saves checkpoints locally).

An object store has no atomic rename: on GCS a rename is a copy, then a
delete. One object written or copied is atomic, though: readers see the
old object or the whole new one. The helpers that publish a file or a
folder (`replace`, `keep_copy`, `publish_directory`) rely only on that.

A URL's failures (an unknown bucket, no permission, the network) are
raised as `OSError`s (`FileNotFoundError`, `PermissionError`) naming the
path, as a local path's are, so callers handle both alike.

Example:
```python
from keras_spactor import file_paths

run = "gs://my-bucket/runs/x"
file_paths.makedirs(run)
with file_paths.open_file(file_paths.join(run, "notes.txt"), "w") as f:
    f.write("hello")
```
"""

import contextlib
import glob as local_glob
import os
import shutil
import tempfile


def is_remote(path):
    """Whether `path` is a URL served by `tf.io.gfile` (has a scheme)."""
    return "://" in os.fspath(path)


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


@contextlib.contextmanager
def _os_errors(path):
    """TensorFlow's errors on `path` as the `OSError` a local path gives."""
    import tensorflow as tf

    try:
        yield
    except tf.errors.OpError as error:
        lines = (error.message or "").strip().splitlines()
        reason = lines[0] if lines else type(error).__name__
        kind = {
            tf.errors.NotFoundError: FileNotFoundError,
            tf.errors.PermissionDeniedError: PermissionError,
            tf.errors.UnauthenticatedError: PermissionError,
        }.get(type(error), OSError)
        raise kind(f"{path}: {reason}") from error


def join(path, *parts):
    """`os.path.join`; a URL keeps its scheme (`gs://b` + `x` = `gs://b/x`)."""
    return os.path.join(os.fspath(path), *parts)


def exists(path):
    if is_remote(path):
        with _os_errors(path):
            return _gfile().exists(path)
    return os.path.exists(path)


def isdir(path):
    if is_remote(path):
        with _os_errors(path):
            return _gfile().isdir(path)
    return os.path.isdir(path)


def isfile(path):
    if is_remote(path):
        with _os_errors(path):
            return _gfile().exists(path) and not _gfile().isdir(path)
    return os.path.isfile(path)


def listdir(path):
    """The names in folder `path` (without the trailing `/` GCS gives
    sub-folders)."""
    if is_remote(path):
        with _os_errors(path):
            return [name.rstrip("/") for name in _gfile().listdir(path)]
    return os.listdir(path)


def glob(pattern):
    """The paths matching `pattern`, sorted."""
    if is_remote(pattern):
        with _os_errors(pattern):
            return sorted(_gfile().glob(pattern))
    return sorted(local_glob.glob(pattern))


def has_magic(pattern):
    return local_glob.has_magic(os.fspath(pattern))


def getsize(path):
    if is_remote(path):
        with _os_errors(path):
            return _gfile().stat(path).length
    return os.path.getsize(path)


def makedirs(path):
    """Creates folder `path` and its parents; an existing one is fine."""
    if is_remote(path):
        with _os_errors(path):
            _gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def remove(path):
    if is_remote(path):
        with _os_errors(path):
            _gfile().remove(path)
    else:
        os.remove(path)


def rmtree(path, ignore_errors=False):
    """Deletes folder `path` and everything in it."""
    if not is_remote(path):
        shutil.rmtree(path, ignore_errors=ignore_errors)
        return
    try:
        with _os_errors(path):
            _gfile().rmtree(path)
    except OSError:
        if not ignore_errors:
            raise


def open_file(path, mode="r"):
    """`open(path, mode)`, or a `tf.io.gfile.GFile` for a URL.

    A GFile opened for writing uploads on `close`: on GCS the object then
    appears whole, or not at all.
    """
    if is_remote(path):
        return _gfile().GFile(path, mode)
    return open(path, mode)


def replace(source, target):
    """Moves file `source` to `target`, replacing it.

    Local: `os.replace`, atomic. A URL: a copy then a delete (`target`
    holds the old object or the whole new one at every moment).
    """
    if is_remote(source) or is_remote(target):
        with _os_errors(target):
            _gfile().rename(source, target, overwrite=True)
    else:
        os.replace(source, target)


def keep_copy(source, target):
    """Makes `target` a whole copy of file `source`, `source` unchanged.

    Local: a hard link (or a copy) under a temporary name, then an atomic
    rename. A URL: one object copy, atomic on GCS.
    """
    if is_remote(source) or is_remote(target):
        with _os_errors(target):
            _gfile().copy(source, target, overwrite=True)
        return
    staged = target + ".partial"
    try:
        os.link(source, staged)
    except OSError:  # no hard links on this file system
        shutil.copyfile(source, staged)
    os.replace(staged, target)


def _files_under(folder):
    """Paths relative to `folder` of every file below it."""
    if not is_remote(folder):
        return sorted(
            os.path.relpath(os.path.join(root, name), folder)
            for root, _, names in os.walk(folder)
            for name in names
        )
    found = []
    with _os_errors(folder):
        walked = list(_gfile().walk(folder))
    for root, _, names in walked:
        relative = os.path.relpath(root.rstrip("/"), folder.rstrip("/"))
        for name in names:
            found.append(os.path.normpath(os.path.join(relative, name)))
    return sorted(found)


def copy_tree(source, target, last=()):
    """Copies the files of folder `source` into folder `target`.

    Either side may be local or a URL. Files whose name is in `last` are
    copied after all the others, so that a reader who waits for them
    finds the rest in place.
    """
    files = _files_under(source)
    files.sort(key=lambda name: os.path.basename(name) in last)
    gfile = _gfile()
    for name in files:
        destination = join(target, name)
        with _os_errors(destination):
            gfile.makedirs(os.path.dirname(destination))
            gfile.copy(join(source, name), destination, overwrite=True)


def publish_directory(temporary, final, last=()):
    """Moves the whole folder `temporary` to `final`.

    Local: one atomic `os.replace` (`final` must not exist). A URL (no
    rename of folders there): the files are copied into `final`, those
    named in `last` after all the others, then `temporary` is deleted; a
    reader must treat `final` as whole only once a `last` file is there.
    """
    if not (is_remote(temporary) or is_remote(final)):
        os.replace(temporary, final)
        return
    copy_tree(temporary, final, last=last)
    rmtree(temporary, ignore_errors=True)


def write_through_local_folder(path, write):
    """Calls `write(folder)` on `path`, or on a local temporary folder whose
    files are then copied to `path` when it is a URL.

    For writers that use `os` and `open` (keras-hub's `save_to_preset`).
    """
    if not is_remote(path):
        write(path)
        return
    with tempfile.TemporaryDirectory(prefix="keras-spactor-") as folder:
        write(folder)
        makedirs(path)
        copy_tree(folder, path)
