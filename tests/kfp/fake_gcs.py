"""A local HTTP server that speaks the few Google Cloud Storage JSON API calls an upload makes
(bucket and object lookups, multipart upload), for ``STORAGE_EMULATOR_HOST``."""

from __future__ import annotations

import email
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse


class FakeStorage:
    def __init__(self, buckets: tuple[str, ...] = ("kale",), status: int | None = None) -> None:
        self.buckets = set(buckets)
        self.objects: dict[tuple[str, str], bytes] = {}
        self.uploads = 0
        self.forced_status = status
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _missing(self) -> None:
                self._answer(404, {"error": {"code": 404, "message": "Not Found"}})

            def do_GET(self) -> None:
                if fake.forced_status:
                    self._answer(fake.forced_status, {"error": {
                        "code": fake.forced_status, "message": "denied by the test"}})
                    return
                parts = urlparse(self.path).path.split("/")  # '', storage, v1, b, B[, o, O]
                bucket = parts[4]
                if bucket not in fake.buckets:
                    self._missing()
                elif len(parts) == 5:
                    self._answer(200, {"name": bucket})
                elif (bucket, unquote(parts[6])) in fake.objects:
                    self._answer(200, {"name": unquote(parts[6]), "bucket": bucket})
                else:
                    self._missing()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                bucket = urlparse(self.path).path.split("/")[5]
                if bucket not in fake.buckets:
                    self._missing()
                    return
                message = email.message_from_bytes(
                    f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body)
                metadata_part, data_part = message.get_payload()
                name = json.loads(metadata_part.get_payload())["name"]
                fake.objects[(bucket, name)] = data_part.get_payload(decode=True)
                fake.uploads += 1
                self._answer(200, {"name": name, "bucket": bucket})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> FakeStorage:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
