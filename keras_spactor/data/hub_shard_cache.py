"""A bounded local cache of dataset shards fetched from the Hugging Face Hub.

`HubShardCache.fetch(shard, next_shard)` returns a local file of one
document per line for `shard` and starts fetching `next_shard` in the
background, so that the next shard downloads while the current one trains.
The cache then holds the current shard and the next one, nothing else:
every other shard is deleted. Downloads retry with exponential backoff on
HTTP 429, 5xx and dropped connections; after `retries` failures `fetch`
raises an `OSError` whose one line names the shard.
"""

import atexit
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from urllib.parse import quote

_PROCESS_DIR = re.compile(r"process-(.+)-(\d+)-")
# Hub answers worth a second try: rate limits and server errors.
_RETRY_STATUSES = {408, 425, 429} | set(range(500, 600))
_CHUNK_BYTES = 4 * 2**20


def default_cache_dir():
    """`$KERAS_SPACTOR_HUB_CACHE`, else `~/.cache/keras_spactor/hub`."""
    configured = os.environ.get("KERAS_SPACTOR_HUB_CACHE")
    if configured:
        return configured
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return os.path.join(base, "keras_spactor", "hub")


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_dirs(base):
    """Deletes the shard folders that processes of this host no longer
    running left (a home folder may be shared by several hosts)."""
    host = socket.gethostname()
    for name in os.listdir(base):
        match = _PROCESS_DIR.match(name)
        if match and match.group(1) == host:
            if not _process_alive(int(match.group(2))):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)


class ShardFetchError(OSError):
    """A shard that could not be fetched, named in the message's one line."""


class HubShardCache:
    """Fetches the shards of one Hub dataset repository, two at a time.

    Each instance works in a folder of its own under `cache_dir`, named
    after the host and process, so that the processes of a multi-process run (or
    two datasets of one process) never delete each other's shards; folders
    of processes no longer running are deleted when a cache is made. The
    folder holds at most two shards at rest, the one being read and the
    next (plus, while a download runs, that shard's partial file, and
    while a parquet shard is converted to JSON lines, both of its forms).

    Args:
        repo_id: str. The dataset repository, `"owner/name"`.
        revision: str. A commit hash (or branch or tag) to download from.
        endpoint: str. The Hub's URL (`HF_ENDPOINT`).
        text_field: str. The field or column that holds the text.
        cache_dir: str or `None`. Defaults to `default_cache_dir()`.
        retries: int. Attempts per shard before giving up.
        backoff_seconds: float. The first wait between attempts; it
            doubles after each failure, up to 60 s (a server's
            `Retry-After` is honoured within that cap).
        display_name: callable from a shard path to the name errors use.

    Example:
    ```python
    cache = HubShardCache("allenai/c4", "main", "https://huggingface.co",
                          "text")
    local, compression = cache.fetch("en/c4-train.00000-of-01024.json.gz",
                                     "en/c4-train.00001-of-01024.json.gz")
    ```
    """

    def __init__(
        self,
        repo_id,
        revision,
        endpoint,
        text_field="text",
        cache_dir=None,
        retries=8,
        backoff_seconds=1.0,
        display_name=None,
    ):
        self.repo_id = repo_id
        self.revision = revision
        self.endpoint = endpoint.rstrip("/")
        self.text_field = text_field
        self.retries = max(1, int(retries))
        self.backoff_seconds = float(backoff_seconds)
        self.display_name = display_name or (lambda shard: shard)
        base = cache_dir or default_cache_dir()
        os.makedirs(base, exist_ok=True)
        _remove_stale_dirs(base)
        self.directory = tempfile.mkdtemp(
            prefix=f"process-{socket.gethostname()}-{os.getpid()}-", dir=base
        )
        atexit.register(shutil.rmtree, self.directory, ignore_errors=True)
        self._lock = threading.Lock()
        # shard -> the background thread fetching it.
        self._pending = {}
        # shard -> (local path, compression) or the exception its fetch hit.
        self._done = {}

    def url(self, shard):
        """The download URL of a shard (the Hub's `resolve/` route)."""
        return (
            f"{self.endpoint}/datasets/{self.repo_id}/resolve/"
            f"{quote(self.revision, safe='')}/{quote(shard)}"
        )

    def fetch(self, shard, next_shard=""):
        """The local copy of `shard`, as `(path, compression)`.

        Deletes every other shard but `next_shard`, whose fetch starts in
        the background (an empty `next_shard` starts none).

        Raises:
            ShardFetchError: an `OSError` naming the shard, after
                `retries` failed attempts or for an unreadable shard.
        """
        shard = _text(shard)
        next_shard = _text(next_shard)
        self._start(shard)
        with self._lock:
            thread = self._pending.get(shard)
        thread.join()
        with self._lock:
            result = self._done.pop(shard)
            del self._pending[shard]
            keep = {shard, next_shard}
            for other in [s for s in self._done if s not in keep]:
                self._forget(other)
        if isinstance(result, BaseException):
            raise result
        self._delete_other_files(keep_paths={result[0]}, keep=next_shard)
        if next_shard and next_shard != shard:
            self._start(next_shard)
        return result

    def _start(self, shard):
        with self._lock:
            if shard in self._pending:
                return
            thread = threading.Thread(
                target=self._run, args=(shard,), daemon=True
            )
            self._pending[shard] = thread
        thread.start()

    def _run(self, shard):
        try:
            result = self._fetch_now(shard)
        except BaseException as error:  # handed to the reader in `fetch`
            result = error
        with self._lock:
            self._done[shard] = result

    def _forget(self, shard):
        result = self._done.pop(shard)
        self._pending.pop(shard, None)
        if not isinstance(result, BaseException):
            _remove(result[0])

    def _stem(self, shard):
        return quote(shard, safe="")

    def _delete_other_files(self, keep_paths, keep):
        """Deletes what a consumed shard left (its file, a partial one)."""
        prefix = self._stem(keep) + "." if keep else None
        for name in os.listdir(self.directory):
            path = os.path.join(self.directory, name)
            if path in keep_paths or (prefix and name.startswith(prefix)):
                continue
            _remove(path)

    def _fetch_now(self, shard):
        stem = os.path.join(self.directory, self._stem(shard))
        lower = shard.lower()
        raw = stem + (".download.gz" if lower.endswith(".gz") else ".download")
        self._download(shard, raw)
        try:
            if lower.endswith(".parquet"):
                return self._convert_parquet(shard, raw, stem + ".jsonl"), ""
            if lower.endswith((".txt", ".txt.gz")) or self.text_field == "text":
                return raw, "GZIP" if lower.endswith(".gz") else ""
            return self._convert_json(shard, raw, stem + ".jsonl"), ""
        except OSError as error:
            raise ShardFetchError(
                f"{self.display_name(shard)}: cannot be read ({error})"
            ) from None

    def _download(self, shard, path):
        from huggingface_hub.utils import build_hf_headers
        from huggingface_hub.utils import get_session

        headers = build_hf_headers()
        wait = self.backoff_seconds
        reason = ""
        for attempt in range(1, self.retries + 1):
            partial = path + ".partial"
            try:
                retry_after = self._download_once(
                    get_session(), shard, partial, headers
                )
                if retry_after is None:
                    os.replace(partial, path)
                    return
                reason, server_wait = retry_after
            except _transport_errors() as error:
                reason, server_wait = f"{type(error).__name__}: {error}", None
            _remove(partial)
            if attempt == self.retries:
                break
            time.sleep(min(60.0, max(wait, server_wait or 0.0)))
            wait = min(60.0, wait * 2)
        raise ShardFetchError(
            f"{self.display_name(shard)}: download failed after "
            f"{self.retries} attempts ({reason.splitlines()[0][:200]})"
        )

    def _download_once(self, session, shard, partial, headers):
        """`None` once `partial` holds the shard; `(reason, wait)` for an
        answer worth retrying. Raises `ShardFetchError` on a final one."""
        with session.stream(
            "GET",
            self.url(shard),
            headers=headers,
            follow_redirects=True,
            timeout=60.0,
        ) as response:
            status = response.status_code
            if status in _RETRY_STATUSES:
                return f"HTTP {status}", _retry_after(response)
            if status != 200:
                raise ShardFetchError(
                    f"{self.display_name(shard)}: download failed (HTTP "
                    f"{status}{_hint(status)})"
                )
            expected = response.headers.get("Content-Length")
            written = 0
            with open(partial, "wb") as file:
                for chunk in response.iter_raw(_CHUNK_BYTES):
                    file.write(chunk)
                    written += len(chunk)
        if expected is not None and written != int(expected):
            return (
                f"connection dropped after {written} of {expected} bytes",
                None,
            )
        return None

    def _convert_parquet(self, shard, raw, target):
        """The parquet shard's text column as `{"text": ...}` lines."""
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(raw)
        if self.text_field not in parquet.schema_arrow.names:
            raise ShardFetchError(
                f"{self.display_name(shard)}: no column "
                f"{self.text_field!r} (columns: "
                f"{', '.join(parquet.schema_arrow.names)})"
            )
        with open(target + ".partial", "w", encoding="utf-8") as out:
            for batch in parquet.iter_batches(columns=[self.text_field]):
                for text in batch.column(0).to_pylist():
                    out.write(_text_line(text))
        parquet.close()
        _remove(raw)
        os.replace(target + ".partial", target)
        return target

    def _convert_json(self, shard, raw, target):
        """The shard's `text_field` as `{"text": ...}` lines."""
        import gzip

        opener = gzip.open if raw.endswith(".gz") else open
        with (
            opener(raw, "rt", encoding="utf-8", errors="replace") as lines,
            open(target + ".partial", "w", encoding="utf-8") as out,
        ):
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    out.write("\n")  # an empty document, counted as now
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ShardFetchError(
                        f"{self.display_name(shard)}, line {number}: not "
                        f"valid JSON ({e.msg})"
                    ) from None
                if not isinstance(record, dict) or not isinstance(
                    record.get(self.text_field), str
                ):
                    raise ShardFetchError(
                        f"{self.display_name(shard)}, line {number}: no "
                        f"{self.text_field!r} string"
                    )
                out.write(_text_line(record[self.text_field]))
        _remove(raw)
        os.replace(target + ".partial", target)
        return target


def _text(value):
    if hasattr(value, "numpy"):
        value = value.numpy()
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _text_line(text):
    return json.dumps({"text": text or ""}, ensure_ascii=False) + "\n"


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _transport_errors():
    """Connection failures (refused, reset, timed out, cut mid-body)."""
    try:  # the HTTP client huggingface_hub uses
        import httpx2 as httpx
    except ImportError:
        import httpx
    return (httpx.TransportError, ConnectionError, TimeoutError)


def _retry_after(response):
    value = response.headers.get("Retry-After", "")
    try:
        return float(value)
    except ValueError:
        return None


def _hint(status):
    if status in (401, 403):
        return "; a gated dataset needs `hf auth login` or HF_TOKEN"
    if status == 404:
        return "; the shard is not in the repository at this revision"
    return ""
