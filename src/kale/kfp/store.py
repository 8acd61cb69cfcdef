"""The bundle store: where a project bundle too big to ride inside the pipeline package goes.

A Kubeflow run becomes an Argo Workflow kept in etcd, which refuses objects of more than about
1.5 MB, so a bundle carried inline in the package must stay small (``INLINE_LIMIT``). A bigger
one is uploaded to an object store the cluster reads, under a name made of its content hash (an
unchanged project is not uploaded twice), and the pipeline imports it with ``dsl.importer``, so
KFP's own launcher downloads it with the cluster's object-store credentials.

The store is ``--bundle-store URI``, else ``KALE_BUNDLE_STORE``, else ``bundle_store`` in
``[tool.kale]``:

- ``minio://bucket/prefix``: the MinIO that comes with Kubeflow Pipelines (the cluster reads it
  with no further setup). Kale uploads through its S3 API at ``AWS_ENDPOINT_URL_S3`` or
  ``AWS_ENDPOINT_URL``, else the in-cluster ``http://minio-service.kubeflow:9000``, with the
  usual ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``;
- ``s3://bucket/prefix``: Amazon S3 or any S3-compatible store (boto3's configuration);
- ``gs://bucket/prefix``: Google Cloud Storage (Application Default Credentials);
- a local folder (a path or ``file://``): for ``kfp.local``, or a cluster that mounts it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import urlparse

from kale.errors import KaleError
from kale.kfp.bundle import Bundle

#: The largest bundle (compressed) carried inside the package.
INLINE_LIMIT = 512 * 1024

#: Where Kubeflow's own MinIO answers inside the cluster.
DEFAULT_MINIO_ENDPOINT = "http://minio-service.kubeflow:9000"

_SCHEMES = ("s3", "minio", "gs")


class StoreError(KaleError):
    """The bundle could not be put in the bundle store."""


def configured_store(root: str | os.PathLike[str], flag: str | None = None) -> str | None:
    """The bundle store for the project at ``root``: flag, environment, then ``[tool.kale]``."""
    from kale.kfp.requirements import kale_settings

    store = flag or os.environ.get("KALE_BUNDLE_STORE") or kale_settings(root).get(
        "bundle_store")
    return check_store(store) if store else None


def check_store(store: str) -> str:
    """``store`` if Kale can upload to it; a ``StoreError`` that says what is accepted if not."""
    parsed = urlparse(store)
    if parsed.scheme in _SCHEMES:
        if not parsed.netloc:
            raise StoreError(f"the bundle store {store!r} names no bucket",
                             fix=f"write it as {parsed.scheme}://BUCKET/PREFIX")
        return store.rstrip("/")
    if parsed.scheme in ("", "file"):
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


def upload_bundle(bundle: Bundle, store: str) -> str:
    """Put ``bundle`` in ``store`` (unless an identical one is there) and return its URI, as
    Kubeflow's importer reads it."""
    store = check_store(store)
    parsed = urlparse(store)
    name = bundle_name(bundle)
    if parsed.scheme in ("", "file"):
        return _upload_local(bundle, Path(parsed.path if parsed.scheme else store), name)
    key = "/".join(part for part in (parsed.path.strip("/"), name) if part)
    uri = f"{parsed.scheme}://{parsed.netloc}/{key}"
    if parsed.scheme == "gs":
        _upload_gcs(bundle, parsed.netloc, key, uri)
    else:
        _upload_s3(bundle, parsed.netloc, key, uri, minio=parsed.scheme == "minio")
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


def _upload_s3(bundle: Bundle, bucket: str, key: str, uri: str, *, minio: bool) -> None:
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise StoreError(f"uploading the project bundle to {uri} needs boto3",
                         fix="pip install 'boto3>=1.34,<2' (or kale-sdk[s3])") from None
    endpoint = None
    if minio:
        endpoint = (os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
                    or DEFAULT_MINIO_ENDPOINT)
    where = f"{uri}" + (f" (through {endpoint})" if endpoint else "")
    try:
        client = boto3.client("s3", endpoint_url=endpoint)
        try:
            client.head_object(Bucket=bucket, Key=key)
            return  # the same content is there already
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey",
                                                                   "NotFound"):
                raise
        client.put_object(Bucket=bucket, Key=key, Body=bundle.data,
                          ContentType="application/gzip")
    except ClientError as error:
        details = error.response.get("Error", {})
        code = str(details.get("Code", ""))
        if code in ("NoSuchBucket",):
            fix = f"create the bucket {bucket}, or choose another bundle store"
        elif code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            fix = ("check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (for Kubeflow's MinIO, "
                   "the keys in the mlpipeline-minio-artifact secret) and that they may write "
                   f"to {bucket}")
        else:
            fix = "check the bundle store URI and your access to it"
        raise StoreError(f"the project bundle could not be uploaded to {where}: {code} "
                         f"{details.get('Message', '')}".rstrip(), fix=fix) from None
    except BotoCoreError as error:
        credentials = "credential" in type(error).__name__.lower()
        raise StoreError(
            f"the project bundle could not be uploaded to {where}: {error}",
            fix="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS profile)"
            if credentials else "check the endpoint is reachable from here (AWS_ENDPOINT_URL "
            "for an S3-compatible store)",
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

