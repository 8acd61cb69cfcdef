"""The Kubeflow Pipelines server a package is compiled for, and what each release does with it.

A submission reads the server's version from its health endpoint (``tag_name``, answered by
every 2.x API server: ``backend/src/apiserver/main.go``); a dry run takes ``--server-version``.
Every release from 2.0.0 accepts Kale's packages (their ``pipeline_spec.proto`` parses them), but
several settings are honoured only from some release on. Each rule below names the backend
source that makes it one (kubeflow/pipelines at the tag named). For a setting a server would drop
or break, Kale never submits in silence: it refuses, naming the release that supports it and the
fix, or compiles it another way and says so (``Compiled.notes``).

Without a known version (a dry run without ``--server-version``, a development build of the
server whose ``tag_name`` is ``unknown``) the package is compiled for the newest release, and the
compile message names the oldest release that runs it as compiled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kale.errors import KaleError

Version = tuple[int, int, int]

#: The oldest Kubeflow Pipelines Kale submits to: the first with the v2beta1 API and v2 packages.
MINIMUM: Version = (2, 0, 0)

#: ``pipelineConfig`` in the Kubernetes platform spec (the pipeline's ``timeout``, as
#: ``activeDeadlineSeconds``) is known from 2.17.0 (``api/v2alpha1/pipeline_spec.proto``). Up to
#: 2.16 the API server reads the platform document with ``protojson.Unmarshal``, which refuses
#: the unknown field, and ``IsPlatformSpecWithKubernetesConfig`` then says it is no platform
#: spec at all: the whole document is dropped silently, with every step's timeout, labels and
#: annotations (``backend/src/apiserver/template/v2_template.go@2.16.0``, ``NewV2SpecTemplate``).
PIPELINE_TIMEOUT: Version = (2, 17, 0)

#: ``active_deadline_seconds`` and ``pod_metadata`` of ``KubernetesExecutorConfig`` are known to
#: the driver from 2.1.0 (``kubernetes_platform/proto/kubernetes_executor_config.proto``; 2.0.x
#: builds against kubernetes_platform of 2023-04-04, without them). The 2.0.x driver parses the
#: task's config with ``jsonpb.UnmarshalString``, which fails on unknown fields, and the task
#: fails (``backend/src/v2/cmd/driver/main.go@2.0.0``).
STEP_POD_SETTINGS: Version = (2, 1, 0)

#: A task's ``retryPolicy`` becomes an Argo ``retryStrategy`` from 2.5.0; 2.0-2.4 have no retry
#: code in their Argo compiler (``backend/src/v2/compiler/argocompiler/container.go@2.5.0``,
#: ``getTaskRetryStrategy``).
RETRIES: Version = (2, 5, 0)

#: The driver replaces ``{{$.pipeline_job_uuid}}`` (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``, the run
#: id Kale's ``[[RunUUID]]`` reads) from 2.5.0 (``backend/src/v2/driver/driver.go@2.5.0``); before,
#: a step gets the placeholder's own text.
RUN_ID: Version = (2, 5, 0)

#: Pod labels and annotations go on each task's own pod from 2.14.0 (kubeflow/pipelines#12049,
#: ``getPodMetadataParameters`` in ``backend/src/v2/compiler/argocompiler/container.go@2.14.0``).
#: Before, tasks without retries share one executor template (``system-container-impl``),
#: created once with the labels of the first task compiled, so a step's labels land on other
#: steps' pods or on none (``addContainerExecutorTemplate``, ``container.go@2.5.0``).
POD_METADATA_PER_TASK: Version = (2, 14, 0)

#: Servers from 2.15 may refuse pipelines without a namespace in multi-user mode
#: (``REQUIRE_NAMESPACE_FOR_PIPELINES``, ``backend/src/apiserver/validation/namespace.go@2.15.0``),
#: and give each namespace object-store keys that reach only some prefixes of the bucket
#: (``manifests/kustomize/base/installs/multi-user/pipelines-profile-controller/sync.py@2.15.0``).
NAMESPACED_STORE: Version = (2, 15, 0)

#: The in-cluster object store is ``seaweedfs.kubeflow:9000`` from 2.16.0; the ``minio-service``
#: Service that 2.15's SeaweedFS kept for compatibility is gone from the manifests
#: (``backend/src/v2/objectstore/config.go@2.16.0``, ``DefaultEndpointInMultiUserMode``;
#: ``manifests/kustomize/third-party/seaweedfs/base/seaweedfs/seaweedfs-service.yaml@2.16.0``).
SEAWEEDFS: Version = (2, 16, 0)

_VERSION = re.compile(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+.][0-9A-Za-z.+-]*)?\s*$")


def parse_version(text: str | None) -> Version | None:
    """``(2, 14, 3)`` for ``"2.14.3"``, ``"v2.14.3"`` or ``"2.14.3-rc.1"``; None for what names no
    release (``"unknown"``, ``"dev"``, ``""``), as a development build reports."""
    match = _VERSION.match(text or "")
    if not match:
        return None
    return int(match[1]), int(match[2]), int(match[3] or 0)


def spelled(version: Version) -> str:
    return ".".join(str(part) for part in version)


def check_version_flag(text: str, flag: str = "--server-version") -> Version:
    """The version ``--server-version`` names, or an error that says what is expected."""
    version = parse_version(text)
    if version is None:
        raise KaleError(f"{flag} {text!r} is not a Kubeflow Pipelines release",
                        fix=f"write the release as the server reports it, for example {flag} "
                        "2.14.3 (the health endpoint's tag_name: GET /apis/v2beta1/healthz)")
    if version < MINIMUM:
        raise KaleError(f"{flag} {text}: Kale compiles for Kubeflow Pipelines "
                        f"{spelled(MINIMUM)} and later (v2 packages)",
                        fix="upgrade the server to Kubeflow Pipelines 2.x")
    return version


@dataclass(frozen=True)
class Target:
    """The server a package is compiled for: its release (None when not known), whether it
    is multi-user, and the namespace the submission uses."""

    version: Version | None = None
    #: how the version was learnt, for messages: "the server", "--server-version"
    source: str = "not known"
    tag: str = ""
    multi_user: bool = False
    namespace: str | None = None
    #: a server a submission goes to (not a dry run's: that package may serve kfp.local)
    submission: bool = False

    def supports(self, release: Version) -> bool:
        """Whether the server honours what came in ``release``; an unknown server is taken to be
        the newest (the compile message names the release needed)."""
        return self.version is None or self.version >= release

    @property
    def named(self) -> str:
        """``Kubeflow Pipelines 2.14.3 (the server's tag_name)``, for messages."""
        if self.version is None:
            return "this Kubeflow Pipelines"
        return f"Kubeflow Pipelines {self.tag or spelled(self.version)} ({self.source})"


NEWEST = Target()


def target_from_healthz(answer: dict[str, object], flag: str | None = None,
                        namespace: str | None = None) -> Target:
    """The server as its health endpoint describes it; ``flag`` (``--server-version``) stands
    in when the server does not say (a development build answers ``tag_name: unknown``)."""
    tag = str(answer.get("tag_name") or "")
    version = parse_version(tag)
    multi_user = bool(answer.get("multi_user"))
    if version is not None:
        if version < MINIMUM:
            raise KaleError(
                f"Kubeflow Pipelines {tag} is older than {spelled(MINIMUM)}, the first release "
                "with the v2 API and packages Kale submits",
                fix="upgrade Kubeflow Pipelines to 2.x (Kale supports 2.0.0 and later)")
        return Target(version, "the server's tag_name", tag, multi_user, namespace, True)
    if flag:
        return Target(check_version_flag(flag), "--server-version", flag, multi_user, namespace,
                      True)
    return Target(None, f"the server's tag_name is {tag or 'empty'!r}", tag, multi_user,
                  namespace, True)
