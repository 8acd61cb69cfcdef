"""Stand-ins for what a Katib study talks to besides the Pipelines API (``tests/kfp/fake_kfp``):
a Kubernetes API server that keeps Katib Experiments and Trials, and ML Metadata's gRPC-web
gateway answering ``GetArtifactsByID``. Both on 127.0.0.1, recording every request.

The metadata messages are built with protobuf's own runtime from descriptors written here (the
field numbers of ml_metadata's ``metadata_store.proto``), so the trial command's hand-written
decoding is checked against a real protobuf encoder.
"""

from __future__ import annotations

import json
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

EXPERIMENTS = "/apis/kubeflow.org/v1beta1/namespaces/{}/experiments"


class _Server:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urlparse(self.path)
                owner.requests.append({"method": method, "path": url.path, "body": body,
                                       "query": {k: v[0] for k, v in parse_qs(url.query).items()},
                                       "headers": self.headers})  # any letter case
                status, kind, data, extra = owner.route(method, url.path, owner.requests[-1])
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def route(self, method: str, path: str, request: dict[str, Any]
              ) -> tuple[int, str, bytes, dict[str, str]]:
        raise NotImplementedError


class FakeKubernetes(_Server):
    """The Kubernetes API, as far as Katib's custom resources go: experiments are created and
    read in a namespace; ``trials`` (a list the test sets) are listed by experiment label;
    ``status`` is what a GET of an experiment answers. Requests without the bearer ``token``
    get 401; namespaces not in ``namespaces`` get 404, as the API server answers them."""

    def __init__(self, token: str = "k8s-token", namespaces: tuple[str, ...] = ("team-a",)
                 ) -> None:
        super().__init__()
        self.token = token
        self.namespaces = namespaces
        self.experiments: dict[tuple[str, str], dict[str, Any]] = {}
        self.status: dict[str, Any] = {}
        self.trials: list[dict[str, Any]] = []

    def kubeconfig(self, path: Any, namespace: str | None = "team-a") -> str:
        context = {"cluster": "stand-in", "user": "tester"}
        if namespace:
            context["namespace"] = namespace
        text = json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
            "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": self.token}}],
            "contexts": [{"name": "stand-in", "context": context}]})
        path.write_text(text)
        return str(path)

    def _json(self, status: int, payload: Any) -> tuple[int, str, bytes, dict[str, str]]:
        return status, "application/json", json.dumps(payload).encode(), {}

    def _error(self, status: int, message: str) -> tuple[int, str, bytes, dict[str, str]]:
        return self._json(status, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                   "message": message, "code": status})

    def route(self, method: str, path: str, request: dict[str, Any]
              ) -> tuple[int, str, bytes, dict[str, str]]:
        if request["headers"].get("Authorization") != f"Bearer {self.token}":
            return self._error(401, "Unauthorized")
        parts = path.strip("/").split("/")
        # apis/kubeflow.org/v1beta1/namespaces/<ns>/<plural>[/<name>]
        if parts[:3] != ["apis", "kubeflow.org", "v1beta1"] or len(parts) < 6 or \
                parts[3] != "namespaces":
            return self._error(404, f"the server could not find the requested resource {path}")
        namespace, plural = parts[4], parts[5]
        if namespace not in self.namespaces:
            return self._error(404, f'namespaces "{namespace}" not found')
        if plural == "experiments" and method == "POST":
            body = json.loads(request["body"])
            name = body["metadata"]["name"]
            if (namespace, name) in self.experiments:
                return self._error(409, f'experiments.kubeflow.org "{name}" already exists')
            body["metadata"].setdefault("namespace", namespace)
            self.experiments[(namespace, name)] = body
            return self._json(201, body)
        if plural == "experiments" and method == "GET" and len(parts) == 7:
            found = self.experiments.get((namespace, parts[6]))
            if found is None:
                return self._error(404, f'experiments.kubeflow.org "{parts[6]}" not found')
            return self._json(200, {**found, "status": self.status})
        if plural == "trials" and method == "GET":
            selector = request["query"].get("labelSelector", "")
            wanted = selector.partition("=")[2]
            items = [t for t in self.trials
                     if t["metadata"]["labels"].get("katib.kubeflow.org/experiment") == wanted]
            return self._json(200, {"apiVersion": "kubeflow.org/v1beta1", "kind": "TrialList",
                                    "items": items})
        return self._error(405, f"{method} {path} is not allowed here")


def _metadata_classes() -> dict[str, Any]:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="kale_test_mlmd.proto",
                                              package="kale_test_mlmd", syntax="proto2")
    value = file.message_type.add(name="Value")
    value.field.add(name="int_value", number=1, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    value.field.add(name="double_value", number=2, type=F.TYPE_DOUBLE, label=F.LABEL_OPTIONAL)
    value.field.add(name="string_value", number=3, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    artifact = file.message_type.add(name="Artifact")
    artifact.field.add(name="id", number=1, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    artifact.field.add(name="uri", number=3, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry = artifact.nested_type.add(name="CustomPropertiesEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                    type_name=".kale_test_mlmd.Value")
    artifact.field.add(name="custom_properties", number=5, type=F.TYPE_MESSAGE,
                       label=F.LABEL_REPEATED,
                       type_name=".kale_test_mlmd.Artifact.CustomPropertiesEntry")
    request = file.message_type.add(name="GetArtifactsByIDRequest")
    request.field.add(name="artifact_ids", number=1, type=F.TYPE_INT64, label=F.LABEL_REPEATED)
    response = file.message_type.add(name="GetArtifactsByIDResponse")
    response.field.add(name="artifacts", number=1, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                       type_name=".kale_test_mlmd.Artifact")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(
        f"kale_test_mlmd.{name}")) for name in ("Artifact", "GetArtifactsByIDRequest",
                                               "GetArtifactsByIDResponse")}


class FakeMetadata(_Server):
    """ML Metadata's gRPC-web gateway: ``artifacts`` maps an artifact id to its custom
    properties ({name: number or string}); ``GetArtifactsByID`` answers those asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.artifacts: dict[int, dict[str, Any]] = {}
        self.asked: list[list[int]] = []
        self.classes = _metadata_classes()

    def route(self, method: str, path: str, request: dict[str, Any]
              ) -> tuple[int, str, bytes, dict[str, str]]:
        if path != "/ml_metadata.MetadataStoreService/GetArtifactsByID" or method != "POST":
            return 404, "text/plain", b"no such method", {}
        body = request["body"]
        length = struct.unpack(">I", body[1:5])[0]
        asked = self.classes["GetArtifactsByIDRequest"].FromString(body[5:5 + length])
        self.asked.append(list(asked.artifact_ids))
        answer = self.classes["GetArtifactsByIDResponse"]()
        for number in asked.artifact_ids:
            if number not in self.artifacts:
                continue
            artifact = answer.artifacts.add(id=number, uri=f"minio://mlpipeline/{number}")
            for name, value in self.artifacts[number].items():
                slot = artifact.custom_properties[name]
                if isinstance(value, str):
                    slot.string_value = value
                elif isinstance(value, int):
                    slot.int_value = value
                else:
                    slot.double_value = value
        data = answer.SerializeToString()
        trailer = b"grpc-status:0\r\ngrpc-message:\r\n"
        framed = b"\x00" + struct.pack(">I", len(data)) + data + \
            b"\x80" + struct.pack(">I", len(trailer)) + trailer
        return 200, "application/grpc-web+proto", framed, {}
