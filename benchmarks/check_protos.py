"""Kale's packages against each Kubeflow Pipelines release's protos, run on demand:
``python benchmarks/check_protos.py --kfp-source DIR --proto-python PYTHON``.

Issue 16's audit parsed Kale's packages strictly with the ``pipeline_spec.proto`` of each
release; this re-runs that check. For each release it compiles the protos its backend builds
with (``api/v2alpha1/pipeline_spec.proto`` and
``kubernetes_platform/proto/kubernetes_executor_config.proto`` at the commits its ``go.mod`` pins
up to 2.4.1; from 2.5.0 ``go.mod`` replaces both with the tag's own folders), then parses, with
unknown fields refused (what the API server's ``protojson.Unmarshal`` and the driver's
``jsonpb`` do): the pipeline spec as ``PipelineSpec``, the platform document as
``PlatformSpec``, and each step's Kubernetes config as ``KubernetesExecutorConfig``.

Each flow is compiled for the release (``kale compile --server-version``), and also once for
the newest release (no ``--server-version``), which older servers are expected to refuse: that
is why a submission reads the server's version. A row says ``ok``, ``refused`` (Kale would not
compile the flow for that release, naming the release it needs), or the first field the protos
do not know.

- ``--kfp-source``: a clone of kubeflow/pipelines with its tags (a bare one will do).
- ``--proto-python``: a Python with ``grpcio-tools`` and ``PyYAML`` (``python -m venv v &&
  v/bin/pip install grpcio-tools pyyaml``); the protos are compiled and parsed there, since its
  protobuf may be newer than kfp's. Default: this Python.

Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]

#: release -> (commit of api/, commit of kubernetes_platform/) its backend builds with: the
#: pseudo-versions of github.com/kubeflow/pipelines/api and .../kubernetes_platform in the tag's
#: go.mod, or the tag itself where go.mod replaces them with ./api and ./kubernetes_platform.
RELEASES = {
    "2.0.0": ("758c91f76784", "bd9f74e34de6"),
    "2.1.0": ("758c91f76784", "19a24e3e99db"),
    "2.2.0": ("58ce09e07d03", "8b2a099e8c9f"),
    "2.3.0": ("58ce09e07d03", "d911c8b73b49"),
    "2.4.1": ("873e9dedd766", "d911c8b73b49"),
    **{tag: (tag, tag) for tag in ("2.5.0", "2.14.0", "2.15.0", "2.16.0", "2.17.0")},
}

FLOWS = {
    "timeouts": '''
        from kale.sdk import pipeline, step

        @step(timeout="5m")
        def make(n: int):
            return list(range(n))

        @step
        def total(values):
            return sum(values)

        @pipeline(name="timeouts", timeout="1h")
        def flow(n: int = 3):
            values = make(n)
            total(values)
    ''',
    "retries-labels": '''
        from kale.sdk import pipeline, step

        @step(timeout="5m", retry_count=2, retry_interval=30, retry_factor=2)
        def make(n: int):
            return list(range(n))

        @step(labels={"team": "a"}, annotations={"owner": "me"})
        def total(values):
            return sum(values)

        @pipeline(name="retries-labels")
        def flow(n: int = 3):
            values = make(n)
            total(values)
    ''',
    "logged": '''
        from kale.sdk import artifact, has_metrics, pipeline, step
        from kale.sdk.logging import log_confusion_matrix, log_html, log_metric

        @has_metrics
        @step
        def train(rate: float):
            log_metric("accuracy", 0.9 - rate)
            log_html("report", "<p>report</p>")
            log_confusion_matrix("quality", ["a", "b"], [[1, 0], [0, 1]])
            return rate

        @artifact(name="page", path="page.html")
        @step
        def page(rate):
            with open("page.html", "w") as handle:
                handle.write(str(rate))

        @pipeline(name="logged")
        def flow(rate: float = 0.1):
            value = train(rate)
            page(value)
    ''',
}
EXAMPLES = ("diamond", "ml_experiment", "sweep")

PARSE = '''
import sys
sys.path.insert(0, sys.argv[1])
import yaml
from google.protobuf import json_format
import kubernetes_executor_config_pb2
import pipeline_spec_pb2

for path in sys.argv[2:]:
    with open(path) as handle:
        documents = [d for d in yaml.safe_load_all(handle) if d]
    checks = [(documents[0], pipeline_spec_pb2.PipelineSpec, "PipelineSpec")]
    if len(documents) > 1:
        checks.append((documents[1], pipeline_spec_pb2.PlatformSpec, "PlatformSpec"))
        executors = documents[1].get("platforms", {}).get("kubernetes", {}).get(
            "deploymentSpec", {}).get("executors", {})
        checks += [(config, kubernetes_executor_config_pb2.KubernetesExecutorConfig, name)
                   for name, config in executors.items()]
    found = "ok"
    for document, message, what in checks:
        try:
            json_format.ParseDict(document, message())
        except json_format.ParseError as error:
            field = str(error).split("has no field named ", 1)[-1].split(" at ")[0]
            found = f"FAIL {what}: {field}"
            break
    print(found)
'''


def build_protos(source: str, python: str, folder: Path) -> dict[str, Path]:
    """Each release's protos, compiled to Python modules; the folder of each release's."""
    import google.rpc.status_pb2

    status = Path(google.rpc.status_pb2.__file__).with_name("status.proto")
    include = subprocess.run(
        [python, "-c", "import grpc_tools, os; print(os.path.join(os.path.dirname("
                       "grpc_tools.__file__), '_proto'))"],
        capture_output=True, text=True, check=True).stdout.strip()
    built = {}
    for release, (api, platform) in RELEASES.items():
        protos, generated = folder / release / "protos", folder / release / "generated"
        (protos / "google" / "rpc").mkdir(parents=True)
        generated.mkdir()
        for commit, path in ((api, "api/v2alpha1/pipeline_spec.proto"),
                             (platform, "kubernetes_platform/proto/"
                                        "kubernetes_executor_config.proto")):
            text = subprocess.run(["git", "-C", source, "show", f"{commit}:{path}"],
                                  capture_output=True, text=True, check=True).stdout
            (protos / Path(path).name).write_text(text)
        (protos / "google" / "rpc" / "status.proto").write_text(status.read_text())
        subprocess.run([python, "-m", "grpc_tools.protoc", f"-I{protos}", f"-I{include}",
                        f"--python_out={generated}", str(protos / "pipeline_spec.proto"),
                        str(protos / "kubernetes_executor_config.proto"),
                        str(protos / "google" / "rpc" / "status.proto")], check=True)
        built[release] = generated
    return built


def compile_flow(script: Path, output: Path, release: str | None) -> str | None:
    """Compile ``script`` (for ``release``); None when done, else why Kale refused."""
    command = [sys.executable, "-m", "kale.cli", "compile", script.name, "-o", str(output)]
    command += ["--server-version", release] if release else []
    done = subprocess.run(command, capture_output=True, text=True, cwd=script.parent,
                          env={**os.environ, "KALE_HOME": str(script.parent / ".kale-home")})
    if done.returncode == 0:
        return None
    needs = [part.split(" or later")[0].split("needs Kubeflow Pipelines ")[-1]
             for part in done.stderr.split(";") if "needs Kubeflow Pipelines" in part]
    return f"refused (needs {max(needs, key=lambda v: tuple(map(int, v.split('.'))))})" \
        if needs else "compile failed: " + done.stderr.strip().splitlines()[-1][:60]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kfp-source", required=True,
                        help="a clone of kubeflow/pipelines (with its tags)")
    parser.add_argument("--proto-python", default=sys.executable,
                        help="a Python with grpcio-tools and PyYAML")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        generated = build_protos(options.kfp_source, options.proto_python, folder / "protos")
        scripts = {}
        for name, text in FLOWS.items():
            project = folder / "flows" / name
            project.mkdir(parents=True)
            (project / "flow.py").write_text(textwrap.dedent(text))
            scripts[name] = project / "flow.py"
        for name in EXAMPLES:
            scripts[name] = REPOSITORY / "examples" / name / "pipeline.py"
        packages = folder / "packages"
        packages.mkdir()
        rows: dict[str, dict[str, str]] = {}
        for release in [*RELEASES, None]:
            column = release or "newest"
            for name, script in scripts.items():
                output = packages / f"{name}-{column}.yaml"
                refused = compile_flow(script, output, release)
                rows.setdefault(name, {})[column] = refused or str(output)
        # Parse: each release's packages with its protos, and the newest ones with every set.
        table: dict[str, dict[str, str]] = {}
        for release, modules in generated.items():
            for kind in (release, "newest"):
                paths = {name: rows[name][kind] for name in scripts
                         if rows[name][kind].endswith(".yaml")}
                verdicts = subprocess.run(
                    [options.proto_python, "-c", PARSE, str(modules), *paths.values()],
                    capture_output=True, text=True, check=True).stdout.splitlines()
                for name in scripts:
                    label = f"{name} (for newest)" if kind == "newest" else name
                    table.setdefault(label, {})[release] = dict(
                        zip(paths, verdicts, strict=True)).get(name, rows[name][kind])
    releases = list(RELEASES)
    width = max(len(label) for label in table)

    def cell(verdict: str) -> str:
        if verdict.startswith("refused (needs "):
            return "<" + verdict.removeprefix("refused (needs ").rstrip(")")
        return "FAIL" if verdict.startswith("FAIL") else verdict[:7]

    print(f"{'package':<{width}}  " + "  ".join(f"{release:<7}" for release in releases))
    for label, verdicts in table.items():
        print(f"{label:<{width}}  " + "  ".join(f"{cell(verdicts[r]):<7}" for r in releases))
    print("\n<X.Y.Z: Kale refuses to compile it for that release (it needs X.Y.Z). FAIL: the "
          "release's protos refuse the package; the first field they do not know:")
    for label, verdicts in table.items():
        failed: dict[str, list[str]] = {}
        for release in releases:
            if verdicts[release].startswith("FAIL"):
                failed.setdefault(verdicts[release].removeprefix("FAIL "), []).append(release)
        for why, where in failed.items():
            print(f"  {label} on {', '.join(where)}: {why}")


if __name__ == "__main__":
    main()
