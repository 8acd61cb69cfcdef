"""The command a Katib trial runs: ``python -m kale.tuning.trial ...`` (``kale.tuning.katib``
writes it into the Experiment's trial template).

It starts one KFP run of the uploaded pipeline version with the trial's parameters (each given
as ``name:type=value``, as Katib substitutes ``${trialParameters.name}``, read back by the
parameter's type), waits for it, reads the objective from the run's metrics and prints it as
``name=value`` on stdout, the line Katib's StdOut collector reads; everything else goes to
stderr without ``=`` signs a collector could take for a metric. A run that does not succeed, or
logs no such metric, exits with status 1: Katib marks the trial failed.

Where the metrics are: a Kale step's metrics are the metadata of its ``kale_metrics`` output
(a ``Metrics`` artifact); the Pipelines API gives each task's output artifact ids
(``run_details.task_details[].outputs``), and the values are the artifacts' custom properties in
ML Metadata, read through its gRPC-web gateway (what the KFP UI reads them with:
``metadata-envoy-service`` in ``kubeflow``; ``KALE_METADATA_ENDPOINT`` overrides it). The two
messages needed are encoded here (field numbers from ``ml_metadata/proto/metadata_store.proto``
and ``metadata_store_service.proto``) rather than installing ML Metadata, which pins an old
protobuf.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import time
import urllib.request
from typing import Any

METADATA_ENDPOINT = "http://metadata-envoy-service.kubeflow.svc.cluster.local:9090"
_GET_ARTIFACTS = "/ml_metadata.MetadataStoreService/GetArtifactsByID"
ENDED = {"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED", "CANCELLED"}


class TrialError(Exception):
    """Why the trial has no objective value (printed on stderr; the exit status is 1)."""


def parse_value(kind: str, text: str) -> Any:
    """A trial parameter as its pipeline parameter's type (Katib passes every value as text)."""
    if kind == "str":
        return text
    if kind == "bool":
        if text.lower() in ("true", "1"):
            return True
        if text.lower() in ("false", "0"):
            return False
        raise ValueError(f"{text!r} is not a bool")
    if kind == "int":
        number = float(text)
        if number != int(number):
            raise ValueError(f"{text!r} is not a whole number")
        return int(number)
    if kind == "float":
        return float(text)
    return json.loads(text)  # list, dict


# -- a few protobuf messages, by hand --------------------------------------------------------------


def _varint(number: int) -> bytes:
    number &= (1 << 64) - 1  # int64 as protobuf writes it
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    shift = number = 0
    while True:
        byte = data[at]
        at += 1
        number |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return number, at
        shift += 7


def fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of each field of a message: varints as ints, 64-bit as
    8 bytes, length-delimited as bytes."""
    found = []
    at = 0
    while at < len(data):
        key, at = _read_varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _read_varint(data, at)
        elif wire == 1:
            value, at = data[at:at + 8], at + 8
        elif wire == 2:
            length, at = _read_varint(data, at)
            value, at = data[at:at + length], at + length
        elif wire == 5:
            value, at = data[at:at + 4], at + 4
        else:
            raise TrialError(f"ML Metadata answered a message Kale cannot read (wire type {wire})")
        found.append((number, wire, value))
    return found


def artifacts_request(ids: list[int]) -> bytes:
    """GetArtifactsByIDRequest: ``repeated int64 artifact_ids = 1``."""
    return b"".join(_varint(1 << 3) + _varint(number) for number in ids)


def _value(data: bytes) -> Any:
    """ml_metadata.Value: int_value = 1, double_value = 2, string_value = 3."""
    for number, wire, value in fields(data):
        if number == 1 and wire == 0:
            return value - (1 << 64) if value >= 1 << 63 else value
        if number == 2 and wire == 1:
            return struct.unpack("<d", value)[0]
        if number == 3 and wire == 2:
            return value.decode(errors="replace")
    return None


def artifact_properties(response: bytes) -> list[dict[str, Any]]:
    """GetArtifactsByIDResponse (``repeated Artifact artifacts = 1``): each artifact's custom
    properties (``map<string, Value> custom_properties = 5``)."""
    found = []
    for number, wire, artifact in fields(response):
        if number != 1 or wire != 2:
            continue
        properties: dict[str, Any] = {}
        for field, kind, entry in fields(artifact):
            if field == 5 and kind == 2:
                parts = {n: v for n, _, v in fields(entry)}
                if 1 in parts:
                    properties[parts[1].decode(errors="replace")] = _value(parts.get(2, b""))
        found.append(properties)
    return found


def grpc_web_call(endpoint: str, method: str, message: bytes) -> bytes:
    """One unary gRPC-web call (HTTP/1.1): a framed request, the first data frame back."""
    body = b"\x00" + struct.pack(">I", len(message)) + message
    request = urllib.request.Request(
        endpoint.rstrip("/") + method, data=body, method="POST",
        headers={"Content-Type": "application/grpc-web+proto", "X-Grpc-Web": "1",
                 "Accept": "application/grpc-web+proto"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        data = answer.read()
        status = answer.headers.get("grpc-status")
    at, payload, trailers = 0, None, ""
    while at + 5 <= len(data):
        flag, length = data[at], struct.unpack(">I", data[at + 1:at + 5])[0]
        chunk = data[at + 5:at + 5 + length]
        at += 5 + length
        if flag & 0x80:
            trailers += chunk.decode(errors="replace")
        elif payload is None:
            payload = chunk
    for line in trailers.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() == "grpc-status":
            status = value.strip()
    if status not in (None, "0") or payload is None:
        raise TrialError(f"ML Metadata at {endpoint} refused {method} (grpc-status {status}): "
                         f"{trailers.strip() or 'no message'}")
    return payload


# -- the trial -------------------------------------------------------------------------------------


def objective_value(run: Any, objective: str, endpoint: str) -> float:
    """The objective's value among the metrics of the run's ``kale_metrics`` outputs (of the
    named step, for ``step.metric``)."""
    step, _, metric = objective.rpartition(".")
    details = getattr(getattr(run, "run_details", None), "task_details", None) or []
    ids: list[int] = []
    for task in details:
        if step and getattr(task, "display_name", None) != step:
            continue
        outputs = getattr(task, "outputs", None) or {}
        listed = outputs.get("kale_metrics")
        for artifact in (getattr(listed, "artifact_ids", None) or [] if listed is not None
                         else []):
            ids.append(int(artifact))
    if not ids:
        raise TrialError(f"the run has no metrics of {'step ' + step if step else 'any step'} "
                         "(no kale_metrics output): does the step log the objective?")
    values = [properties[metric] for properties in artifact_properties(
        grpc_web_call(endpoint, _GET_ARTIFACTS, artifacts_request(ids)))
        if isinstance(properties.get(metric), (int, float))]
    if not values:
        raise TrialError(f"the run logged no metric {metric}" + (f" in step {step}" if step
                                                                    else ""))
    if len(values) > 1:
        raise TrialError(f"{len(values)} steps of the run logged metric {metric}: the objective "
                         "must name one (step.metric)")
    return float(values[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kale.tuning.trial",
                                     description="One Katib trial: one KFP run of a pipeline.")
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--pipeline-id")
    parser.add_argument("--version-id")
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--experiment-id")
    parser.add_argument("--namespace")
    parser.add_argument("--host", help="the Pipelines API (default: as --kfp resolves it)")
    parser.add_argument("--objective", required=True)
    parser.add_argument("--metric-name", required=True)
    parser.add_argument("--values", default="{}", help="the other parameters, as JSON")
    parser.add_argument("--parameter", action="append", default=[],
                        metavar="NAME:TYPE=VALUE")
    options = parser.parse_args(argv)
    import contextlib

    try:
        # kfp.Client prints links on stdout: only the objective's line may be there.
        with contextlib.redirect_stdout(sys.stderr):
            value = run_trial(options)
    except TrialError as error:
        print(f"kale trial: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        from kale.errors import KaleError

        if not isinstance(error, KaleError):
            raise
        print(str(error).replace("=", " "), file=sys.stderr)
        return 1
    # The one line on stdout: what Katib's StdOut collector reads.
    print(f"{options.metric_name}={value!r}", flush=True)
    return 0


def run_trial(options: argparse.Namespace) -> float:
    import json as json_module

    from kale.kfp.connection import connect, explain
    from kale.kfp.follow import state_name, wait_interval

    values = json_module.loads(options.values)
    for given in options.parameter:
        head, _, text = given.partition("=")
        name, _, kind = head.partition(":")
        try:
            values[name] = parse_value(kind, text)
        except ValueError as reason:
            raise TrialError(f"parameter {name} got {text!r} from Katib: {reason}") from None
    client, connection = connect(options.host, options.namespace)
    action = f"start a run of pipeline {options.pipeline}"
    try:
        pipeline_id, version_id = options.pipeline_id, options.version_id
        if not pipeline_id:
            from kale.kfp.submit import ResourceNames

            found = client.get_pipeline_id(ResourceNames.of(options.pipeline).display) or \
                client.get_pipeline_id(ResourceNames.of(options.pipeline).pipeline)
            if not found:
                raise TrialError(f"no pipeline {options.pipeline} on the server: upload it "
                                 "first (python script.py --kfp)")
            pipeline_id = found
        if not version_id:
            versions = client.list_pipeline_versions(pipeline_id, sort_by="created_at desc",
                                                     page_size=1).pipeline_versions or []
            version_id = versions[0].pipeline_version_id if versions else None
        experiment_id = options.experiment_id or client.create_experiment(
            name=options.experiment, namespace=connection.namespace).experiment_id
        trial = os.environ.get("HOSTNAME", "")
        run = client.run_pipeline(experiment_id=experiment_id,
                                  job_name=f"{options.pipeline} {trial}".strip(),
                                  pipeline_id=pipeline_id, version_id=version_id, params=values)
        print(f"kale trial: started run {run.run_id} of pipeline {options.pipeline}",
              file=sys.stderr, flush=True)
        action = f"follow run {run.run_id}"
        while True:
            current = client.get_run(run.run_id)
            state = state_name(getattr(current, "state", None))
            if state in ENDED:
                break
            time.sleep(wait_interval())
    except TrialError:
        raise
    except Exception as error:
        from kale.errors import KaleError

        if isinstance(error, KaleError):
            raise
        raise explain(error, connection, action, "run") from error
    if state != "SUCCEEDED":
        raise TrialError(f"run {run.run_id} ended {state}")
    endpoint = os.environ.get("KALE_METADATA_ENDPOINT") or METADATA_ENDPOINT
    return objective_value(current, options.objective, endpoint)


if __name__ == "__main__":
    sys.exit(main())
