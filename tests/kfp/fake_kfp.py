"""A local HTTP server that speaks the KFP v2beta1 REST endpoints kfp.Client uses, and records
every request (with its ``Authorization`` header), so submission can be tested without a cluster.

``FakeKubeflow(status=403)`` refuses every request; ``fake.fail("POST", "/experiments", 403)``
refuses only that one, with KFP's JSON error (or a given body); ``multi_user=True`` makes the
health endpoint say so and, like KFP, refuses experiments without a namespace.

``tag_name`` is the release the health endpoint reports (``"unknown"``, as a development build
says, or ``None`` for an answer without it). ``require_namespace=True`` (with ``multi_user``)
is a multi-user server that refuses pipelines without a namespace, as KFP 2.15 does with
``REQUIRE_NAMESPACE_FOR_PIPELINES`` and its Kubernetes pipeline store always does; it also
refuses pipeline and version names that are not DNS-1123 names, as that store does at HEAD
(``pipeline_store_kubernetes.go``, ``pipeline_version_name.go``). Recurring runs are
created with ``POST /recurringruns``.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

PREFIX = "/apis/v2beta1"
# k8s.io/apimachinery's IsDNS1123Subdomain, as the Kubernetes pipeline store checks names.
_DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?"
                            r"(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# gRPC codes KFP's REST gateway puts in its JSON errors.
_GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 500: 13}
_MESSAGES = {401: "Unauthenticated: request has no valid credentials",
             403: "Failed to authorize with API: PermissionDenied: User 'system:serviceaccount:"
                  "team-a:default-editor' is not authorized",
             404: "Not Found"}


def kfp_error(status: int, message: str | None = None) -> dict[str, Any]:
    """The body KFP answers an error with."""
    message = message or _MESSAGES.get(status, f"error {status}")
    return {"error": message, "code": _GRPC_CODES.get(status, 2), "message": message,
            "details": []}


class FakeKubeflow:
    def __init__(self, status: int | None = None, *, multi_user: bool = False,
                 tag_name: str | None = "2.17.0", require_namespace: bool = False) -> None:
        self.tag_name = tag_name
        self.require_namespace = require_namespace
        self.recurring_runs: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.failures: dict[tuple[str, str], tuple[int, Any]] = {}
        self.failures_left: dict[tuple[str, str], int] = {}  # absent: for ever
        self.multi_user = multi_user
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, list[dict[str, Any]]] = {}
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.forced_status = status
        self.final_state = "SUCCEEDED"
        # What successive GETs of a run answer before its final state: (run state, tasks), where
        # tasks are {display name: state} or {display name: (state, error message)}.
        self.progress: list[tuple[str, dict[str, Any]]] = []
        self.final_tasks: dict[str, Any] = {}
        # The outputs GETs of a run give each task, by display name ({output: {"artifact_ids":
        # [...]}}), as KFP lists a task's output artifacts (their values are in ML Metadata).
        self.task_outputs: dict[str, dict[str, Any]] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _answer(self, status: int, payload: Any) -> None:
                text = isinstance(payload, str)
                data = payload.encode() if text else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html" if text else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                body = self._body()
                fake.requests.append({"method": method, "path": url.path, "query": query,
                                      "body": body, "headers": dict(self.headers),
                                      "authorization": self.headers.get("Authorization")})
                key = (method, url.path.removeprefix(PREFIX))
                failure = fake.failures.get(key)
                if failure and fake.failures_left.get(key, 1) > 0:
                    if key in fake.failures_left:
                        fake.failures_left[key] -= 1
                    self._answer(*failure)
                    return
                if fake.forced_status:
                    self._answer(fake.forced_status, kfp_error(fake.forced_status))
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

    def fail(self, method: str, path: str, status: int, body: Any = None,
             times: int | None = None) -> None:
        """Answer ``status`` to ``method path`` (``path`` without the API prefix) from now on,
        or only the next ``times`` times."""
        self.failures[(method, path)] = (status, kfp_error(status) if body is None else body)
        if times is not None:
            self.failures_left[(method, path)] = times

    def calls(self) -> list[tuple[str, str]]:
        return [(r["method"], r["path"].removeprefix(PREFIX)) for r in self.requests]

    def route(self, method: str, path: str, query: dict[str, str], body: bytes
              ) -> tuple[int, Any]:
        path = path.removeprefix(PREFIX)
        if path == "/healthz":
            answer: dict[str, Any] = {"commit_sha": "0123abc", "multi_user": self.multi_user}
            if self.tag_name is not None:
                answer["tag_name"] = self.tag_name
            return 200, answer
        strict = self.multi_user and self.require_namespace
        # A single-user server ignores namespaces, as KFP does.
        namespace = (query.get("namespace") or "") if self.multi_user else ""
        if path == "/pipelines" and method == "GET":
            name = json.loads(query.get("filter", "{}")).get("predicates", [{}])[0] \
                .get("string_value") or json.loads(query.get("filter", "{}")) \
                .get("predicates", [{}])[0].get("stringValue")
            if strict and not namespace:
                return 400, kfp_error(400, "Namespace is required for pipeline operations")
            found = [p for p in self.pipelines.values()
                     if p["display_name"] == name and p["namespace"] == namespace]
            return 200, ({"pipelines": found, "total_size": len(found)} if found else {})
        if path == "/pipelines/upload":
            if strict and not namespace:
                return 400, kfp_error(400, "A namespace is required")
            if strict and not _DNS_SUBDOMAIN.match(query["name"]):
                return 400, kfp_error(400, f"Invalid pipeline name {query['name']!r}: a "
                                      "lowercase RFC 1123 subdomain must consist of lower case "
                                      "alphanumeric characters, '-' or '.'. Use 'display_name' "
                                      "for human-readable labels")
            number = len(self.pipelines) + 1
            pipeline = {"pipeline_id": f"pipeline-{number}", "name": query["name"],
                        "display_name": query.get("display_name") or query["name"],
                        "namespace": namespace}
            self.pipelines[pipeline["pipeline_id"]] = pipeline
            self.versions[pipeline["pipeline_id"]] = [{
                "pipeline_id": pipeline["pipeline_id"], "name": query["name"],
                "display_name": query.get("display_name") or query["name"],
                "pipeline_version_id": f"version-{number}-1"}]
            return 200, pipeline
        if path.startswith("/pipelines/") and path.endswith("/versions"):
            pipeline_id = path.split("/")[2]
            versions = self.versions.get(pipeline_id, [])
            return 200, {"pipeline_versions": versions, "total_size": len(versions)}
        if path == "/pipelines/upload_version":
            pipeline_id = query["pipelineid"]
            if strict and not self.pipelines[pipeline_id]["namespace"]:
                return 400, kfp_error(400, "Namespace is required for pipeline operations")
            if strict and not _DNS_SUBDOMAIN.match(query["name"]):
                return 400, kfp_error(400, f"Invalid pipeline version name {query['name']!r}: "
                                      "a lowercase RFC 1123 subdomain must consist of lower "
                                      "case alphanumeric characters, '-' or '.'. Use "
                                      "'display_name' for human-readable labels")
            versions = self.versions.setdefault(pipeline_id, [])
            if any(v["name"] == query["name"] for v in versions):
                return 409, kfp_error(409, f"pipeline version {query['name']} already exists")
            version = {"pipeline_id": pipeline_id, "name": query["name"],
                       "display_name": query.get("display_name") or query["name"],
                       "pipeline_version_id": f"version-{pipeline_id}-{len(versions) + 1}"}
            versions.append(version)
            return 200, version
        if path == "/experiments" and method == "GET":
            predicates = json.loads(query.get("filter", "{}")).get("predicates", [{}])
            name = predicates[0].get("string_value") or predicates[0].get("stringValue")
            # A single-user server ignores namespaces, as KFP does.
            namespace = (query.get("namespace") or None) if self.multi_user else None
            found = [e for e in self.experiments.values()
                     if e["display_name"] == name and e.get("namespace") == namespace]
            return 200, ({"experiments": found, "total_size": len(found)} if found else {})
        if path == "/experiments" and method == "POST":
            data = json.loads(body)
            if self.multi_user and not data.get("namespace"):
                return 400, kfp_error(400, "Failed to create a experiment: Invalid input error: "
                                      "An experiment cannot have an empty namespace in "
                                      "multi-user mode")
            experiment = {"experiment_id": f"experiment-{len(self.experiments) + 1}",
                          "display_name": data["display_name"],
                          "namespace": data.get("namespace") if self.multi_user else None}
            self.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if path == "/recurringruns" and method == "POST":
            data = json.loads(body)
            concurrency = int(data.get("max_concurrency") or 0)
            if not 1 <= concurrency <= 10:
                return 400, kfp_error(400, "Max concurrency of a recurring run must be at least "
                                      f"1 and at most 10. Received {concurrency}")
            recurring = {"recurring_run_id": f"recurring-{len(self.recurring_runs) + 1}",
                         "display_name": data["display_name"], "status": "ENABLED",
                         "experiment_id": data.get("experiment_id")}
            self.recurring_runs[recurring["recurring_run_id"]] = {**recurring, "request": data}
            return 200, recurring
        if path == "/runs" and method == "POST":
            data = json.loads(body)
            run = {"run_id": f"run-{len(self.runs) + 1}", "display_name": data["display_name"],
                   "experiment_id": data.get("experiment_id"), "state": "PENDING"}
            self.runs[run["run_id"]] = {**run, "request": data}
            return 200, run
        if path.startswith("/runs/") and method == "GET":
            run = dict(self.runs[path.split("/")[2]])
            run.pop("request", None)
            state, tasks = self.progress.pop(0) if self.progress else (self.final_state,
                                                                       self.final_tasks)
            run["state"] = state
            details = []
            for name, task_state in {self.runs[run["run_id"]]["display_name"]: state,
                                     **tasks}.items():  # the root DAG comes first, as in KFP
                task_state, message = task_state if isinstance(task_state, tuple) else (
                    task_state, None)
                details.append({"display_name": name, "state": task_state,
                                **({"error": {"code": 2, "message": message}} if message
                                   else {}),
                                **({"outputs": self.task_outputs[name]}
                                   if name in self.task_outputs else {})})
            run["run_details"] = {"task_details": details}
            if state in ("SUCCEEDED", "FAILED", "CANCELED"):
                run["finished_at"] = "2026-11-24T10:00:00Z"
            return 200, run
        return 404, kfp_error(404, f"no route {method} {path}")
