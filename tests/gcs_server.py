"""A loopback stand-in for Google Cloud Storage, for `tf.io.gfile`'s `gs://`.

TensorFlow's GCS file system talks to fixed hosts
(`https://www.googleapis.com/storage/v1/`, `.../upload/storage/v1/` and
`https://storage.googleapis.com/`) through libcurl, with no endpoint
setting. libcurl honours `https_proxy`, and TensorFlow hands
`CURL_CA_BUNDLE` to it as the certificate authorities to trust. So this
server is the HTTPS proxy: it accepts `CONNECT`, answers the tunnel itself
with TLS under a certificate of its own authority, and serves the JSON API
calls TensorFlow makes (object metadata, listing, ranged reads, resumable
uploads, rewrite, delete) from memory. `environment()` gives the variables
a process needs to use it; `GOOGLE_AUTH_TOKEN_FOR_TESTING` makes
TensorFlow skip every credential lookup.

Objects live in this process: a client process may be killed and another
started, and both see the same bucket.

Example:
```python
with GcsStandIn(tmp_path) as gcs:
    subprocess.run(command, env={**os.environ, **gcs.environment()})
    assert "run/checkpoint.keras" in gcs.objects("bucket")
```
"""

import datetime
import http.server
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import urllib.parse
import uuid

_HOSTS = ("www.googleapis.com", "storage.googleapis.com")


def openssl_available():
    return shutil.which("openssl") is not None


def make_certificates(folder):
    """A certificate authority and a server certificate for the GCS hosts,
    made with the `openssl` command; returns (ca, cert, key) paths."""
    ca_key = os.path.join(folder, "ca.key")
    ca = os.path.join(folder, "ca.pem")
    key = os.path.join(folder, "server.key")
    request = os.path.join(folder, "server.csr")
    cert = os.path.join(folder, "server.pem")
    names = os.path.join(folder, "names.ext")
    with open(names, "w") as f:
        f.write(
            "basicConstraints=CA:FALSE\n"
            "subjectAltName=" + ",".join(f"DNS:{h}" for h in _HOSTS) + "\n"
        )

    def openssl(*arguments):
        subprocess.run(["openssl", *arguments], check=True, capture_output=True)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", ca_key, "-out", ca, "-subj", "/CN=test authority",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
        "-out", request, "-subj", f"/CN={_HOSTS[0]}",
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key,
        "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", names,
    )  # fmt: skip
    return ca, cert, key


class _Bucket:
    def __init__(self):
        self.objects = {}  # name -> (bytes, generation)


class _Store:
    def __init__(self):
        self.lock = threading.Lock()
        self.buckets = {}
        self.uploads = {}  # upload id -> (bucket, name)
        self.generation = 0
        self.requests = []  # (method, host, path) of every call

    def bucket(self, name):
        return self.buckets.setdefault(name, _Bucket())

    def put(self, bucket, name, data):
        with self.lock:
            self.generation += 1
            self.bucket(bucket).objects[name] = (bytes(data), self.generation)
            return self.generation


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store = None  # set per server
    tls = None

    def log_message(self, *arguments):
        pass

    # The tunnel: TLS on the same connection, then plain requests.
    def do_CONNECT(self):
        host = self.path.split(":")[0]
        if host not in _HOSTS:
            self.send_error(403, f"only {_HOSTS} are served here")
            return
        self.send_response(200, "Connection Established")
        self.end_headers()
        self.wfile.flush()
        self.connection = self.tls.wrap_socket(
            self.connection, server_side=True
        )
        self.rfile = self.connection.makefile("rb")
        self.wfile = self.connection.makefile("wb", buffering=0)
        self.close_connection = False

    def _reply(self, status, body=b"", headers=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _body(self):
        # libcurl streams TensorFlow's uploads in chunks.
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after the chunk
                if size == 0:
                    return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _route(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        host = (self.headers.get("Host") or "").split(":")[0]
        with self.store.lock:
            self.store.requests.append((self.command, host, url.path))
        parts = url.path.split("/")
        return host, parts, query

    def do_GET(self):
        host, parts, query = self._route()
        if host == "storage.googleapis.com":
            # /bucket/escaped-object
            bucket = parts[1]
            name = urllib.parse.unquote("/".join(parts[2:]))
            self._read(bucket, name)
        elif parts[1:4] == ["storage", "v1", "b"]:
            bucket = parts[4]
            if len(parts) == 5:
                self._reply(200, {"name": bucket, "location": "US"})
            elif len(parts) == 6 and parts[5] == "o":
                self._list(bucket, query)
            else:
                self._stat(bucket, urllib.parse.unquote("/".join(parts[6:])))
        else:
            self._reply(404, {"error": "not served"})

    def do_POST(self):
        host, parts, query = self._route()
        body = self._body()
        if parts[1:5] == ["upload", "storage", "v1", "b"]:
            bucket = parts[5]
            name = query["name"]
            if query.get("uploadType") == "resumable":
                upload = uuid.uuid4().hex
                with self.store.lock:
                    self.store.uploads[upload] = (bucket, name)
                location = (
                    f"https://www.googleapis.com/upload/storage/v1/b/{bucket}"
                    f"/o?uploadType=resumable&upload_id={upload}"
                )
                self._reply(200, headers=[("Location", location)])
            else:
                self._finish_upload(bucket, name, body)
            return
        if "rewriteTo" in parts or "copyTo" in parts:
            # /storage/v1/b/B/o/SRC/rewriteTo/b/B2/o/DST
            at = parts.index("rewriteTo" if "rewriteTo" in parts else "copyTo")
            source_bucket = parts[4]
            source = urllib.parse.unquote("/".join(parts[6:at]))
            target_bucket = parts[at + 2]
            target = urllib.parse.unquote("/".join(parts[at + 4 :]))
            objects = self.store.bucket(source_bucket).objects
            if source not in objects:
                self._reply(404, {"error": f"no object {source}"})
                return
            data = objects[source][0]
            generation = self.store.put(target_bucket, target, data)
            self._reply(
                200,
                {
                    "kind": "storage#rewriteResponse",
                    "done": True,
                    "totalBytesRewritten": str(len(data)),
                    "objectSize": str(len(data)),
                    "resource": self._metadata(target, data, generation),
                },
            )
            return
        self._reply(404, {"error": "not served"})

    def do_PUT(self):
        host, parts, query = self._route()
        body = self._body()
        upload = query.get("upload_id")
        with self.store.lock:
            target = self.store.uploads.get(upload)
        if target is None:
            self._reply(404, {"error": "no such upload"})
            return
        if body or not self.headers.get("Content-Range", "").startswith(
            "bytes */"
        ):
            self._finish_upload(*target, body)
        else:  # a status query of a finished (or empty) upload
            bucket, name = target
            if name in self.store.bucket(bucket).objects:
                data, generation = self.store.bucket(bucket).objects[name]
                self._reply(200, self._metadata(name, data, generation))
            else:
                self._finish_upload(bucket, name, b"")

    def do_DELETE(self):
        host, parts, query = self._route()
        bucket = parts[4]
        name = urllib.parse.unquote("/".join(parts[6:]))
        with self.store.lock:
            removed = self.store.bucket(bucket).objects.pop(name, None)
        self._reply(204 if removed is not None else 404)

    def _finish_upload(self, bucket, name, data):
        generation = self.store.put(bucket, name, data)
        self._reply(200, self._metadata(name, data, generation))

    @staticmethod
    def _metadata(name, data, generation):
        updated = datetime.datetime.now(datetime.timezone.utc)
        return {
            "name": name,
            "size": str(len(data)),
            "generation": str(generation),
            "updated": updated.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        }

    def _stat(self, bucket, name):
        found = self.store.bucket(bucket).objects.get(name)
        if found is None:
            self._reply(404, {"error": {"code": 404, "message": "Not Found"}})
            return
        self._reply(200, self._metadata(name, *found))

    def _read(self, bucket, name):
        found = self.store.bucket(bucket).objects.get(name)
        if found is None:
            self._reply(404, b"No such object")
            return
        data = found[0]
        ranged = self.headers.get("Range", "")
        if not ranged.startswith("bytes="):
            self._reply(200, data)
            return
        first, _, last = ranged[len("bytes=") :].partition("-")
        first = int(first)
        last = min(int(last) if last else len(data) - 1, len(data) - 1)
        if first >= len(data):
            self._reply(416, b"", [("Content-Range", f"bytes */{len(data)}")])
            return
        self._reply(
            206,
            data[first : last + 1],
            [("Content-Range", f"bytes {first}-{last}/{len(data)}")],
        )

    def _list(self, bucket, query):
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter")
        limit = int(query.get("maxResults", 1000))
        names = sorted(
            n for n in self.store.bucket(bucket).objects if n.startswith(prefix)
        )
        items, prefixes = [], []
        for name in names:
            rest = name[len(prefix) :]
            if delimiter and delimiter in rest:
                folder = prefix + rest.split(delimiter)[0] + delimiter
                if folder not in prefixes:
                    prefixes.append(folder)
            else:
                items.append(name)
        start = int(query.get("pageToken", 0))
        page = items[start : start + limit]
        reply = {"kind": "storage#objects"}
        if page:
            reply["items"] = [{"name": n} for n in page]
        if prefixes and start == 0:
            reply["prefixes"] = prefixes
        if start + limit < len(items):
            reply["nextPageToken"] = str(start + limit)
        self._reply(200, reply)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client killed mid-request (the tests SIGKILL one) is expected.
        if not isinstance(sys.exc_info()[1], (OSError, ssl.SSLError)):
            super().handle_error(request, client_address)


class GcsStandIn:
    """The stand-in server on 127.0.0.1, in a thread of this process.

    Args:
        folder: a temporary folder for the certificates.
    """

    def __init__(self, folder):
        self.folder = str(folder)
        os.makedirs(self.folder, exist_ok=True)
        self.ca, cert, key = make_certificates(self.folder)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
        self.store = _Store()
        handler = type(
            "Handler", (_Handler,), {"store": self.store, "tls": tls}
        )
        self.server = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self.server.serve_forever, daemon=True
        )

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def environment(self):
        """The variables that send a process's `gs://` calls here."""
        port = self.server.server_address[1]
        config = os.path.join(self.folder, "gcloud")
        os.makedirs(config, exist_ok=True)
        return {
            "https_proxy": f"http://127.0.0.1:{port}",
            "HTTPS_PROXY": f"http://127.0.0.1:{port}",
            # Loopback stays direct (JAX's coordinator, a local Hub).
            "no_proxy": "127.0.0.1,localhost",
            "NO_PROXY": "127.0.0.1,localhost",
            "CURL_CA_BUNDLE": self.ca,
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "stand-in",
            "NO_GCE_CHECK": "true",
            "CLOUDSDK_CONFIG": config,
            "GCS_RETRY_CONFIG_INIT_DELAY_TIME_US": "1000",
            "GCS_RETRY_CONFIG_MAX_RETRIES": "3",
        }

    def objects(self, bucket):
        """The object names in `bucket`, sorted."""
        with self.store.lock:
            return sorted(self.store.bucket(bucket).objects)

    def read(self, bucket, name):
        with self.store.lock:
            return self.store.bucket(bucket).objects[name][0]

    def put(self, bucket, name, data):
        self.store.put(bucket, name, data)
