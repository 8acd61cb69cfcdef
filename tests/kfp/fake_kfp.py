"""A local HTTP server that speaks the KFP v2beta1 REST endpoints kfp.Client uses, and records
every request, so submission can be tested without a cluster."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

PREFIX = "/apis/v2beta1"


class FakeKubeflow:
    def __init__(self, status: int | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, list[dict[str, Any]]] = {}
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.forced_status = status
        self.final_state = "SUCCEEDED"
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _answer(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                body = self._body()
                fake.requests.append({"method": method, "path": url.path, "query": query,
                                      "body": body, "headers": dict(self.headers)})
                if fake.forced_status and not url.path.endswith("/healthz"):
                    self._answer(fake.forced_status, {"error": "denied", "code": 16})
                    return
                status, payload = fake.route(method, url.path, query, body)
                self._answer(status, payload)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeKubeflow:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def calls(self) -> list[tuple[str, str]]:
        return [(r["method"], r["path"].removeprefix(PREFIX)) for r in self.requests]

    def route(self, method: str, path: str, query: dict[str, str], body: bytes
              ) -> tuple[int, Any]:
        path = path.removeprefix(PREFIX)
        if path == "/healthz":
            return 200, {"multi_user": False}
        if path == "/pipelines" and method == "GET":
            name = json.loads(query.get("filter", "{}")).get("predicates", [{}])[0] \
                .get("string_value") or json.loads(query.get("filter", "{}")) \
                .get("predicates", [{}])[0].get("stringValue")
            found = [p for p in self.pipelines.values() if p["display_name"] == name]
            return 200, ({"pipelines": found, "total_size": len(found)} if found else {})
        if path == "/pipelines/upload":
            number = len(self.pipelines) + 1
            pipeline = {"pipeline_id": f"pipeline-{number}", "display_name": query["name"]}
            self.pipelines[pipeline["pipeline_id"]] = pipeline
            self.versions[pipeline["pipeline_id"]] = [{
                "pipeline_id": pipeline["pipeline_id"], "display_name": query["name"],
                "pipeline_version_id": f"version-{number}-1"}]
            return 200, pipeline
        if path.startswith("/pipelines/") and path.endswith("/versions"):
            pipeline_id = path.split("/")[2]
            versions = self.versions.get(pipeline_id, [])
            return 200, {"pipeline_versions": versions, "total_size": len(versions)}
        if path == "/pipelines/upload_version":
            pipeline_id = query["pipelineid"]
            versions = self.versions.setdefault(pipeline_id, [])
            version = {"pipeline_id": pipeline_id, "display_name": query["name"],
                       "pipeline_version_id": f"version-{pipeline_id}-{len(versions) + 1}"}
            versions.append(version)
            return 200, version
        if path == "/experiments" and method == "GET":
            predicates = json.loads(query.get("filter", "{}")).get("predicates", [{}])
            name = predicates[0].get("string_value") or predicates[0].get("stringValue")
            found = [e for e in self.experiments.values() if e["display_name"] == name]
            return 200, ({"experiments": found, "total_size": len(found)} if found else {})
        if path == "/experiments" and method == "POST":
            data = json.loads(body)
            experiment = {"experiment_id": f"experiment-{len(self.experiments) + 1}",
                          "display_name": data["display_name"]}
            self.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if path == "/runs" and method == "POST":
            data = json.loads(body)
            run = {"run_id": f"run-{len(self.runs) + 1}", "display_name": data["display_name"],
                   "experiment_id": data.get("experiment_id"), "state": "PENDING"}
            self.runs[run["run_id"]] = {**run, "request": data}
            return 200, run
        if path.startswith("/runs/") and method == "GET":
            run = dict(self.runs[path.split("/")[2]])
            run.pop("request", None)
            run["state"] = self.final_state
            run["finished_at"] = "2026-11-24T10:00:00Z"
            return 200, run
        return 404, {"error": f"no route {method} {path}"}
