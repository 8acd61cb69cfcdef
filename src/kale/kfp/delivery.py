"""How the project bundle reaches the steps of a Kubeflow run.

Every step takes one artifact, ``kale-bundle``, made by a first task whose metadata also records
the run's id and start time (what ``[[RunUUID]]`` and ``[[CurrentTime]]`` mean, the same for every
step). The bundle gets there one of two ways:

- **Inline**, up to ``INLINE_LIMIT``: the bytes are written into the source of the first task's
  component (and of helper components, ``PART_BYTES`` each). Not as a parameter: Kubeflow hands
  the root DAG with all its constants to one driver as a single command-line argument, and
  Linux refuses an argument over 128 KB; a component's source is handed only to its own pod.
- **From the bundle store** (``kale.kfp.store``) for bigger bundles: ``dsl.importer`` brings the
  uploaded file in, with the cluster's object-store credentials, and the first task copies it.
"""

from __future__ import annotations

import base64
import warnings
from collections.abc import Callable
from typing import Any

from kale.errors import CompileWarning, KaleError
from kale.kfp.bundle import Bundle
from kale.kfp.store import (
    INLINE_LIMIT,
    default_endpoint,
    is_local,
    store_for_server,
    upload_bundle,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kale.kfp.server import Target

#: Bundle bytes per component source: about 87 KB once in base64, well under Linux's 128 KB
#: for one argument, with room for kfp's own wrapper.
PART_BYTES = 64 * 1024

_STAMP = (
    "    bundle.metadata['run_id'] = run_id\n"
    "    bundle.metadata['created'] = "
    "datetime.datetime.now(datetime.timezone.utc).isoformat()\n"
)


def _size(bundle: Bundle) -> str:
    return f"{bundle.size / 2**20:.1f} MB" if bundle.size >= 2**20 else \
        f"{bundle.size / 1024:.1f} KB"


_ADVICE = ("set a bundle store the cluster can read: --bundle-store minio://mlpipeline/kale "
           "(Kubeflow's own object store), s3://BUCKET/PREFIX or gs://BUCKET/PREFIX, or "
           "bundle_store in [tool.kale]; or leave data files out with a .kaleignore file")


def check_placeable(bundle: Bundle, store: str | None) -> None:
    """Refuse a bundle too big for the package when there is no store to upload it to."""
    if bundle.size > INLINE_LIMIT and not store:
        raise KaleError(
            f"the project bundle is {_size(bundle)}, more than the {INLINE_LIMIT // 1024} KB a "
            "pipeline package can carry (Argo refuses a run's workflow over 1 MiB, and the "
            "workflow holds the inline bundle several times), and no bundle store is set to "
            "upload it to", fix=_ADVICE)


def place_bundle(bundle: Bundle, store: str | None, *, upload: bool,
                 target: Target | None = None, notes: list[str] | None = None) -> str | None:
    """Where the bundle travels: ``None`` for inline in the package, else the URI it was
    uploaded to. Small bundles always go inline. ``target`` is the server the package is for:
    it decides the store's prefix and endpoint (``kale.kfp.store.store_for_server``)."""
    if bundle.size <= INLINE_LIMIT:
        return None
    if upload and store:
        if target is not None:
            store = store_for_server(store, target, notes if notes is not None else [])
        if is_local(store):
            warnings.warn(f"the project bundle goes to the local folder {store}: only kfp.local "
                          "or a cluster that mounts it at the same path can read it",
                          CompileWarning, stacklevel=3)
        return upload_bundle(bundle, store, default_endpoint(target))
    if upload:
        check_placeable(bundle, store)
    warnings.warn(
        f"the package carries the {_size(bundle)} project bundle inline: kfp.local runs it, but "
        "Kubeflow may refuse a run this large. "
        + (f"Submitting with --kfp uploads it to {store} instead." if store else
           _ADVICE[0].upper() + _ADVICE[1:] + "."),
        CompileWarning, stacklevel=3)
    return None


class BundleDelivery:
    """The components that make the ``kale-bundle`` artifact, and their tasks in a pipeline."""

    def __init__(self, bundle: Bundle, uri: str | None) -> None:
        self.uri = uri
        encoded = [] if uri else [
            base64.b64encode(bundle.data[start : start + PART_BYTES]).decode()
            for start in range(0, max(bundle.size, 1), PART_BYTES)]
        self._first, self._parts = (encoded[0], encoded[1:]) if encoded else ("", [])
        self._components: list[Any] = []

    @property
    def function_names(self) -> tuple[str, ...]:
        """The Python names (and so the task names) Kale's own components take."""
        return ("kale_bundle", *(f"kale_bundle_part_{n}" for n in range(1, len(self._parts) + 1)))

    def _sources(self) -> list[str]:
        parts = [f"kale_bundle_part_{n}" for n in range(1, len(self._parts) + 1)]
        sources = [
            f"def {name}(part: Output[Artifact]):\n"
            "    import base64\n"
            "    with open(part.path, 'wb') as handle:\n"
            f"        handle.write(base64.b64decode({data!r}))\n"
            for name, data in zip(parts, self._parts, strict=True)
        ]
        if self.uri:
            first = (
                "def kale_bundle(source: Input[Artifact], run_id: str, "
                "bundle: Output[Artifact]):\n"
                "    import datetime, shutil\n"
                "    shutil.copyfile(source.path, bundle.path)\n" + _STAMP)
        else:
            inputs = "".join(f", {name}: Input[Artifact]" for name in parts)
            first = (
                f"def kale_bundle(run_id: str, bundle: Output[Artifact]{inputs}):\n"
                "    import base64, datetime, shutil\n"
                "    with open(bundle.path, 'wb') as handle:\n"
                f"        handle.write(base64.b64decode({self._first!r}))\n"
                f"        for part in [{', '.join(parts)}]:\n"
                "            with open(part.path, 'rb') as piece:\n"
                "                shutil.copyfileobj(piece, handle)\n" + _STAMP)
        return [first, *sources]

    def define(self, define: Callable[[str, str], Any], image: str, install: bool = True
               ) -> None:
        """Make the components (``define`` turns generated source into a function);
        ``install`` False: their pods install no kfp (``--no-install``)."""
        from kfp import dsl

        self._components = [dsl.component(define(source, f"bundle {index}"), base_image=image,
                                          install_kfp_package=install)
                            for index, source in enumerate(self._sources())]

    def add_tasks(self) -> Any:
        """Inside the pipeline body: the tasks; returns the one whose output is the bundle."""
        from kfp import dsl
        from kfp.dsl import Artifact

        first, *parts = self._components
        if self.uri:
            imported = dsl.importer(artifact_uri=self.uri, artifact_class=Artifact,
                                    reimport=False)
            imported.set_display_name("kale-bundle-import")
            task = first(source=imported.output, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        else:
            pieces = {}
            for number, component in enumerate(parts, start=1):
                piece = component()
                piece.set_display_name(f"kale-bundle-part-{number}")
                piece.set_caching_options(False)
                pieces[f"kale_bundle_part_{number}"] = piece.outputs["part"]
            task = first(run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, **pieces)
        task.set_display_name("kale-bundle")
        task.set_caching_options(False)
        return task
