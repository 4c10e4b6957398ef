"""A loopback HTTP server that plays the Hugging Face Hub for tests.

It serves dataset repositories held in memory (path -> bytes) through the
routes `huggingface_hub` and `HubShardCache` use:

- `GET /api/datasets/OWNER/NAME[/revision/REV]`: the repository's info
  (its commit `sha`);
- `GET /api/datasets/OWNER/NAME/tree/REV[/PATH]?recursive=...`: a listing;
- `GET /datasets/OWNER/NAME/resolve/REV/PATH`: a redirect to `/cdn/...`,
  where the file's bytes are served with `Content-Length`, `ETag` and
  `X-Repo-Commit`, as the Hub's CDN does.

Failures can be injected: answer the next downloads with an HTTP status,
or drop the connection half way through a file; `stop()` takes the server
down mid-run. `downloads` counts the files served, by path.
"""

import collections
import hashlib
import http.server
import json
import threading
from urllib.parse import parse_qs
from urllib.parse import unquote
from urllib.parse import urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class HubServer:
    """A Hub on 127.0.0.1 serving `repos` (`{"owner/name": {path: bytes}}`).

    Example:
    ```python
    with HubServer({"me/tiny": {"a.json": b'{"text": "x"}\\n'}}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    ```
    """

    def __init__(self, repos):
        self.repos = repos
        self.downloads = collections.Counter()
        self.requests = []
        self._faults = []  # (path or None, status or "drop")
        self._lock = threading.Lock()
        self._connections = set()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                with server._lock:
                    server._connections.add(self.connection)

            def finish(self):
                with server._lock:
                    server._connections.discard(self.connection)
                super().finish()

            def do_GET(self):
                server._handle(self)

            def do_HEAD(self):
                server._handle(self, head=True)

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, daemon=True
        )
        self._thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        """Stops serving: open connections are cut, new ones refused."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        with self._lock:
            connections = list(self._connections)
        for connection in connections:  # clients keep them alive
            try:
                connection.shutdown(2)
            except OSError:
                pass

    def fail_next(self, count, status=429, path=None):
        """Answers the next `count` downloads (of `path`, if given) with
        `status`."""
        with self._lock:
            self._faults.extend([(path, status)] * count)

    def drop_next(self, count, path=None):
        """Cuts the next `count` downloads (of `path`) half way through."""
        self.fail_next(count, status="drop", path=path)

    def _send(self, handler, status, body, headers=(), head=False):
        handler.send_response(status)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if not head:
            handler.wfile.write(body)

    def _json(self, handler, value, status=200, head=False):
        body = json.dumps(value).encode()
        headers = [("Content-Type", "application/json")]
        if status == 404:
            headers.append(("X-Error-Code", "RepoNotFound"))
        self._send(handler, status, body, headers, head)

    def _handle(self, handler, head=False):
        url = urlsplit(handler.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        query = parse_qs(url.query)
        with self._lock:
            self.requests.append(url.path)
        if parts[:2] == ["api", "datasets"] and len(parts) >= 4:
            repo = "/".join(parts[2:4])
            if repo not in self.repos:
                return self._json(handler, {"error": "not found"}, 404, head)
            rest = parts[4:]
            if not rest or rest[0] == "revision":
                return self._info(handler, repo, head)
            if rest[0] == "tree" and len(rest) >= 2:
                recursive = query.get("recursive", [""])[0].lower() == "true"
                folder = "/".join(rest[2:])
                return self._tree(handler, repo, folder, recursive, head)
        if parts[:1] == ["datasets"] and len(parts) >= 6:
            repo = "/".join(parts[1:3])
            if parts[3] == "resolve" and repo in self.repos:
                path = "/".join(parts[5:])
                if path in self.repos[repo]:
                    # The Hub redirects file downloads to its CDN.
                    location = (
                        f"/cdn/{repo}/{'/'.join(url.path.split('/')[6:])}"
                    )
                    return self._send(
                        handler, 302, b"", [("Location", location)], head
                    )
        if parts[:1] == ["cdn"] and len(parts) >= 4:
            repo, path = "/".join(parts[1:3]), "/".join(parts[3:])
            if path in self.repos.get(repo, {}):
                return self._file(handler, repo, path, head)
        self._json(handler, {"error": "not found"}, 404, head)

    def _info(self, handler, repo, head):
        siblings = [{"rfilename": p} for p in sorted(self.repos[repo])]
        info = {
            "_id": repo,
            "id": repo,
            "sha": COMMIT,
            "private": False,
            "siblings": siblings,
        }
        self._json(handler, info, head=head)

    def _tree(self, handler, repo, folder, recursive, head):
        prefix = folder + "/" if folder else ""
        entries, folders = [], set()
        for path, data in sorted(self.repos[repo].items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/")[0])
                continue
            entries.append(
                {
                    "type": "file",
                    "oid": hashlib.sha1(data).hexdigest(),
                    "size": len(data),
                    "path": path,
                }
            )
        entries += [
            {"type": "directory", "oid": "0" * 40, "path": f}
            for f in sorted(folders)
        ]
        if not entries:
            return self._json(handler, {"error": "not found"}, 404, head)
        self._json(handler, entries, head=head)

    def _file(self, handler, repo, path, head):
        data = self.repos[repo][path]
        with self._lock:
            fault = None
            for i, (wanted, status) in enumerate(self._faults):
                if wanted in (None, path):
                    fault = self._faults.pop(i)[1]
                    break
            if not head:
                self.downloads[path] += 1
        if isinstance(fault, int):
            return self._send(
                handler, fault, b"slow down", [("Retry-After", "0")], head
            )
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
        handler.send_header("X-Repo-Commit", COMMIT)
        handler.end_headers()
        if head:
            return
        if fault == "drop":
            handler.wfile.write(data[: len(data) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(2)
            return
        handler.wfile.write(data)
