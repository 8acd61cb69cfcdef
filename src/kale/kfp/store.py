"""The bundle store: where a project bundle too big to ride inside the pipeline package goes.

A Kubeflow run becomes an Argo Workflow, which Argo refuses over 1 MiB (its node statuses
compressed), and the inline bundle is in it five times, so a bundle carried inline in the
package must stay small (``INLINE_LIMIT``). A bigger
one is uploaded to an object store the cluster reads, under a name made of its content hash (an
unchanged project is not uploaded twice), and the pipeline imports it with ``dsl.importer``, so
KFP's own launcher downloads it with the cluster's object-store credentials.

The store is ``--bundle-store URI``, else ``KALE_BUNDLE_STORE``, else ``bundle_store`` in
``[tool.kale]``:

- ``minio://bucket/prefix``: the MinIO that comes with Kubeflow Pipelines (the cluster reads it
  with no further setup). Kale uploads through its S3 API at ``AWS_ENDPOINT_URL_S3`` or
  ``AWS_ENDPOINT_URL``, else the in-cluster ``http://seaweedfs.kubeflow:9000`` (KFP 2.16 and
  later, or a release not known) or ``http://minio-service.kubeflow:9000`` (before), with the
  usual ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``. On a multi-user server from 2.15 a
  prefix the namespace cannot reach goes under ``private/<namespace>/`` (``store_for_server``);
- ``s3://bucket/prefix``: Amazon S3 or any S3-compatible store (boto3's configuration);
- ``gs://bucket/prefix``: Google Cloud Storage (Application Default Credentials);
- a local folder (a path or ``file://``): for ``kfp.local``, or a cluster that mounts it.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

from kale.errors import KaleError
from kale.kfp.bundle import Bundle

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kale.kfp.server import Target

#: The largest bundle (compressed) carried inside the package. Argo refuses a workflow over
#: 1 MiB once its node statuses are compressed (argo-workflows@v4.0.8 workflow/packer/
#: packer.go), and an inline bundle is in it five times: once in the spec (base64 in its
#: component's source, as JSON), and four times in the status (the driver's input and output,
#: the executor's DAG and pod inputs), where gzip hardly shrinks base64 text. Measured with the
#: model in tests/kfp/argo_size.py (test_inline_limit.py keeps it true): a 104 KB bundle makes a
#: workflow of about 720 KB (70 % of the limit), a 128 KB one about 880 KB (86 %); 104 KB keeps
#: 30 % for the rest of the pipeline (each step's own container, in the same five places).
#: The model counts bundle bytes, whatever they hold, so it still holds now that Kale's own
#: runtime is about 60 KB of any bundle (it was 92 KB; ``kale.kfp.slim``): some 44 KB is left to
#: the project, about 150-200 KB of Python source.
INLINE_LIMIT = 104 * 1024

#: Where Kubeflow's own object store answers inside the cluster: SeaweedFS from KFP 2.16 (the
#: ``minio-service`` Service is gone from its manifests), MinIO before (``kale.kfp.server``).
DEFAULT_MINIO_ENDPOINT = "http://minio-service.kubeflow:9000"
SEAWEEDFS_ENDPOINT = "http://seaweedfs.kubeflow:9000"

_SCHEMES = ("s3", "minio", "gs")


class StoreError(KaleError):
    """The bundle could not be put in the bundle store."""


def configured_store(root: str | os.PathLike[str], flag: str | None = None) -> str | None:
    """The bundle store for the project at ``root``: flag, environment, then ``[tool.kale]``.

    A relative folder in ``pyproject.toml`` is the project's (relative to the folder of
    ``pyproject.toml``) wherever Kale runs from; one given on the command line or in the
    environment is relative to the working directory, as paths typed there are."""
    from kale.kfp.pyproject import kale_settings

    store = flag or os.environ.get("KALE_BUNDLE_STORE")
    if not store:
        store = kale_settings(root).get("bundle_store")
        if store and not urlparse(store).scheme:
            store = str(Path(root) / Path(store).expanduser())
    return check_store(store) if store else None


def check_store(store: str) -> str:
    """``store`` if Kale can upload to it; a ``StoreError`` that says what is accepted if not."""
    parsed = urlparse(store)
    if parsed.scheme in _SCHEMES:
        if not parsed.netloc:
            raise StoreError(f"the bundle store {store!r} names no bucket",
                             fix=f"write it as {parsed.scheme}://BUCKET/PREFIX")
        if parsed.scheme != "gs" and not _BUCKET.match(parsed.netloc):
            raise StoreError(_bad_bucket(store, parsed.netloc),
                             fix=_bucket_fix(parsed.scheme, parsed.netloc))
        return store.rstrip("/")
    if parsed.scheme == "file":
        # file://HOST/path names a path on HOST: `file://store` is not the folder ./store, and
        # `file://./store` would be /store. Only this machine, with an absolute path, is meant.
        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            why = (f"what follows file:// up to the next / is a host name ({parsed.netloc!r})"
                   if parsed.netloc not in ("", "localhost") else "its path is relative")
            raise StoreError(
                f"the bundle store {store!r} is not a local folder: a file:// URI takes an "
                f"absolute path, and {why}",
                fix="write file:///abs/path or a plain path (relative to the working "
                "directory, or to the project in pyproject.toml)")
        trimmed = store.rstrip("/")
        return trimmed if urlparse(trimmed).path else store  # file:/// is the root itself
    if parsed.scheme == "":
        return store.rstrip("/") or "/"
    raise StoreError(
        f"the bundle store {store!r} is not a place Kale can upload to",
        fix="use minio://BUCKET/PREFIX (Kubeflow's own MinIO), s3://BUCKET/PREFIX, "
        "gs://BUCKET/PREFIX, or a local folder",
    )


def bundle_name(bundle: Bundle) -> str:
    return f"kale-bundle-{hashlib.sha256(bundle.data).hexdigest()[:32]}.tar.gz"


def is_local(store: str) -> bool:
    return urlparse(store).scheme in ("", "file")


def _local_folder(store: str) -> Path:
    parsed = urlparse(store)
    return Path(unquote(parsed.path) or "/") if parsed.scheme == "file" else Path(store)


# What boto3 accepts as a bucket name (S3's own rules are stricter, and S3 says so itself).
_BUCKET = re.compile(r"^[A-Za-z0-9._-]{1,255}$")


def _bad_bucket(store: str, bucket: str) -> str:
    return f"the bundle store {store!r} names {bucket!r} as its bucket, which is not a valid " \
           "bucket name"


def _bucket_fix(scheme: str, bucket: str) -> str:
    advice = (f"write it as {scheme}://BUCKET/PREFIX, with a bucket name of lowercase letters, "
              "digits, dots and hyphens (3 to 63 of them)")
    if ":" in bucket or (scheme == "minio" and "." in bucket):
        advice += ("; the store's address is not part of it: set AWS_ENDPOINT_URL="
                   f"http://{bucket} instead")
    return advice


def default_endpoint(target: Target | None = None) -> str:
    """The in-cluster endpoint of Kubeflow's own object store for ``minio://`` stores: SeaweedFS
    from 2.16 (and for a server of unknown release, taken to be the newest), MinIO before."""
    from kale.kfp import server

    if target is not None and target.version is not None and \
            not target.supports(server.SEAWEEDFS):
        return DEFAULT_MINIO_ENDPOINT
    return SEAWEEDFS_ENDPOINT


def store_for_server(store: str, target: Target, notes: list[str]) -> str:
    """The store a bundle goes to for ``target``: ``store``, or the same store under the prefix
    the server lets the namespace reach (said in ``notes``); a refusal when the server could
    not read it.

    - A folder: a cluster's importer takes ``gs://``, ``s3://`` and ``minio://`` URIs only
      (``ParseBucketConfigForArtifactURI`` in ``backend/src/v2/objectstore/config.go@2.17.0``,
      "unsupported Cloud bucket"), so a submission refuses it.
    - ``minio://`` on a multi-user server from 2.15: each namespace's keys reach only
      ``artifacts/``, ``private-artifacts/<ns>/``, ``private/<ns>/`` and ``shared/`` of the
      bucket (the policy ``pipelines-profile-controller/sync.py@2.15.0`` puts on them), and the
      importer reads with the namespace's keys: another prefix goes under ``private/<ns>/``.
    """
    from kale.kfp import server

    parsed = urlparse(store)
    if target.submission and is_local(store):
        raise StoreError(
            f"the bundle store {store} is a folder, and the cluster's importer cannot read "
            "one: Kubeflow Pipelines imports gs://, s3:// and minio:// URIs only",
            fix="use --bundle-store minio://mlpipeline/kale (Kubeflow's own object store), "
            "s3://BUCKET/PREFIX or gs://BUCKET/PREFIX; a folder store serves kfp.local (write "
            "the package with --kfp --dry-run and run it there)")
    namespace = target.namespace
    if parsed.scheme != "minio" or not target.multi_user or not namespace or \
            not target.supports(server.NAMESPACED_STORE):
        return store
    prefix = parsed.path.strip("/")
    reachable = ("artifacts", f"private-artifacts/{namespace}", f"private/{namespace}", "shared")
    if any(prefix == allowed or prefix.startswith(f"{allowed}/") for allowed in reachable):
        return store
    if prefix.split("/")[0] in ("private", "private-artifacts"):
        raise StoreError(
            f"the bundle store {store} is another namespace's: on {target.named}, multi-user, "
            f"the keys of namespace {namespace} reach only {', '.join(p + '/' for p in reachable)}"
            f" of bucket {parsed.netloc}",
            fix=f"use minio://{parsed.netloc}/private/{namespace}/kale")
    chosen = f"minio://{parsed.netloc}/private/{namespace}" + (f"/{prefix}" if prefix else "")
    notes.append(
        f"the bundle goes to {chosen}, not {store}: on {target.named}, multi-user, the keys of "
        f"namespace {namespace} (the importer's, and those the mlpipeline-minio-artifact "
        f"secret holds) reach only {', '.join(p + '/' for p in reachable)} of the bucket")
    return chosen


def upload_bundle(bundle: Bundle, store: str, endpoint: str | None = None) -> str:
    """Put ``bundle`` in ``store`` (unless an identical one is there) and return its URI, as
    Kubeflow's importer reads it. ``endpoint`` is where a ``minio://`` store answers when the
    environment does not say (``default_endpoint``)."""
    store = check_store(store)
    parsed = urlparse(store)
    name = bundle_name(bundle)
    if parsed.scheme in ("", "file"):
        return _upload_local(bundle, _local_folder(store), name)
    key = "/".join(part for part in (parsed.path.strip("/"), name) if part)
    uri = f"{parsed.scheme}://{parsed.netloc}/{key}"
    if parsed.scheme == "gs":
        _upload_gcs(bundle, parsed.netloc, key, uri)
    else:
        _upload_s3(bundle, parsed.netloc, key, uri, minio=parsed.scheme == "minio",
                   default=endpoint or default_endpoint())
    return uri


def _upload_local(bundle: Bundle, folder: Path, name: str) -> str:
    folder = folder.expanduser().resolve()
    target = folder / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            partial = folder / f".{name}.{os.getpid()}.partial"
            partial.write_bytes(bundle.data)
            os.replace(partial, target)  # never a half-written bundle under the final name
    except OSError as error:
        raise StoreError(f"the project bundle cannot be written to {folder}: {error}",
                         fix="choose a bundle store folder you can write to") from None
    return str(target)


def _upload_s3(bundle: Bundle, bucket: str, key: str, uri: str, *, minio: bool,
               default: str = SEAWEEDFS_ENDPOINT) -> None:
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError
    except ImportError:
        raise StoreError(f"uploading the project bundle to {uri} needs boto3",
                         fix="pip install 'boto3>=1.34,<2' (or kale-sdk[s3])") from None
    # boto3 reads the same variables for s3://; for minio:// Kale passes the endpoint itself.
    variable = next((name for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
                     if os.environ.get(name)), None)
    endpoint = os.environ[variable] if variable else None
    if endpoint and not re.match(r"^https?://", endpoint, re.IGNORECASE):
        raise StoreError(f"{variable}={endpoint!r} is not an endpoint URL: it must start with "
                         "http:// or https://",
                         fix=f"set {variable}=http://{endpoint} (or https:// if the store "
                         "answers with TLS)")
    if minio:
        endpoint = endpoint or default
    where = f"{uri}" + (f" (through {endpoint})" if endpoint else "")
    try:
        try:
            client = boto3.client("s3", endpoint_url=endpoint if minio else None)
        except ValueError as error:  # botocore's "Invalid endpoint"
            raise StoreError(f"the project bundle cannot be uploaded to {where}: {error}",
                             fix="set AWS_ENDPOINT_URL to the store's URL, such as "
                             f"{default}") from None
        try:
            client.head_object(Bucket=bucket, Key=key)
            return  # the same content is there already
        except ClientError as error:
            # Without permission to list the bucket, S3 answers 403 for a missing key, not
            # 404: keys that may only upload must still upload. A real refusal shows on the put.
            if error.response.get("Error", {}).get("Code") not in (
                    "404", "NoSuchKey", "NotFound", "403", "Forbidden", "AccessDenied"):
                raise
        client.put_object(Bucket=bucket, Key=key, Body=bundle.data,
                          ContentType="application/gzip")
    except ClientError as error:
        details = error.response.get("Error", {})
        code = str(details.get("Code", ""))
        if code in ("NoSuchBucket",):
            fix = f"create the bucket {bucket}, or choose another bundle store"
        elif code == "InvalidBucketName":
            fix = _bucket_fix("minio" if minio else "s3", bucket)
        elif code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            fix = ("check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (for Kubeflow's MinIO, "
                   "the keys in the mlpipeline-minio-artifact secret) and that they may write "
                   f"to {bucket}")
        else:
            fix = "check the bundle store URI and your access to it"
        raise StoreError(f"the project bundle could not be uploaded to {where}: {code} "
                         f"{details.get('Message', '')}".rstrip(), fix=fix) from None
    except ParamValidationError as error:  # botocore checks the bucket name before sending
        if "bucket" not in str(error).lower():
            raise StoreError(f"the project bundle could not be uploaded to {where}: {error}",
                             fix="check the bundle store URI") from None
        raise StoreError(_bad_bucket(uri, bucket),
                         fix=_bucket_fix("minio" if minio else "s3", bucket)) from None
    except BotoCoreError as error:
        credentials = "credential" in type(error).__name__.lower()
        raise StoreError(
            f"the project bundle could not be uploaded to {where}: {error}",
            fix="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS profile)"
            if credentials else "check the endpoint is reachable from here (AWS_ENDPOINT_URL "
            "for an S3-compatible store; Kubeflow's own answers in the cluster at "
            f"{SEAWEEDFS_ENDPOINT} from KFP 2.16, {DEFAULT_MINIO_ENDPOINT} before)",
        ) from None


def _upload_gcs(bundle: Bundle, bucket: str, key: str, uri: str) -> None:
    try:
        from google.api_core import exceptions as api
        from google.auth import exceptions as auth
        from google.cloud import storage
    except ImportError:
        raise StoreError(f"uploading the project bundle to {uri} needs google-cloud-storage",
                         fix="pip install google-cloud-storage") from None
    try:
        blob = storage.Client().bucket(bucket).blob(key)
        if not blob.exists():
            blob.upload_from_string(bundle.data, content_type="application/gzip")
    except auth.DefaultCredentialsError as error:
        raise StoreError(f"the project bundle could not be uploaded to {uri}: no Google Cloud "
                         f"credentials ({str(error)[:120]})",
                         fix="run `gcloud auth application-default login`, or set "
                         "GOOGLE_APPLICATION_CREDENTIALS") from None
    except api.GoogleAPICallError as error:
        raise StoreError(f"the project bundle could not be uploaded to {uri}: "
                         f"{getattr(error, 'code', '')} {getattr(error, 'message', error)}",
                         fix=f"check that bucket {bucket} exists and that you may write to it"
                         ) from None

