"""How Kale reaches Kubeflow Pipelines: host, namespace and credentials, the ``kfp.Client``
that uses them, and the one-paragraph errors when something refuses.

Connection, resolved before anything is sent and named in every message:

- **Host**: ``--kfp-host``, else ``KF_PIPELINES_ENDPOINT``, else the in-cluster address of the
  Pipelines API that ``kfp.Client`` uses (``http://ml-pipeline.kubeflow.svc.cluster.local:8888``).
- **Namespace**: ``--namespace``, else the one ``kfp.Client.set_user_namespace`` saved in kfp's
  context file (``~/.config/kfp/context.json``), else the pod's service-account namespace
  (``/var/run/secrets/kubernetes.io/serviceaccount/namespace``), else none. This is kfp.Client's
  own order. None suits a single-user Kubeflow Pipelines (the server ignores namespaces there);
  a multi-user one is told apart by its health endpoint and refused with an explanation. The
  namespace goes on the experiment; runs belong to their experiment's namespace.
- **Credentials**: the token file named by ``KF_PIPELINES_SA_TOKEN_PATH``, else the projected
  service-account token at ``/var/run/secrets/kubeflow/pipelines/token`` when it exists, sent as
  ``Authorization: Bearer`` and re-read at every request (the kubelet rotates it). kfp.Client
  reads that file only when it is given no host, so Kale hands it over explicitly. A file that is
  named but cannot be read, or is empty, is an error before anything is contacted. Any file with
  a token works (``kubectl create token ... > file``). An existing token or session cookie in
  kfp's context file (``client_authentication_header_name``/``_value``,
  ``client_authentication_cookie``) is sent by kfp.Client itself.

An unreachable host, a refusal (401, 403), a host that is not the Pipelines API (404), a login
page where the API's JSON was expected (a Kubeflow gateway's answer to a request without a
session), a namespace the server does not know and a multi-user server without a namespace are
each one :class:`KubeflowError` naming the host, the namespace and what to check.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from kale.errors import KaleError

# The address kfp.Client builds for the Pipelines API when it runs in a pod and is given no host.
IN_CLUSTER_HOST = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
# Kubernetes writes the pod's namespace here; kfp.Client reads the same file.
SERVICE_ACCOUNT_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
# Where Kubeflow's "access to Kubeflow Pipelines" PodDefault projects the token (kfp's default).
DEFAULT_TOKEN_FILE = "/var/run/secrets/kubeflow/pipelines/token"
TOKEN_PATH_VARIABLE = "KF_PIPELINES_SA_TOKEN_PATH"
# kfp.Client's settings file: set_user_namespace() writes it, the client reads tokens from it.
KFP_CONTEXT_FILE = "~/.config/kfp/context.json"


class KubeflowError(KaleError):
    """Kubeflow Pipelines could not be reached, or refused what Kale asked."""


class _NotTheAPI(Exception):
    """A successful answer that is not JSON: a page, not the Pipelines API."""

    def __init__(self, url: str, final_url: str | None, body: bytes) -> None:
        self.url, self.final_url, self.body = url, final_url, body
        super().__init__(f"{url} answered a page that is not JSON")


def _insist_on_json(api_client: Any) -> None:
    """Make every successful answer that is not JSON an error.

    A Kubeflow gateway sends a request without a session to its login page (a redirect that
    urllib3 follows); kfp's generated client then reads the HTML as an empty object, so a
    pipeline seems not to exist and the upload fails with a message about a missing id.
    """
    if getattr(api_client, "_kale_insists_on_json", False):
        return
    request = api_client.request

    def checked(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        response = request(method, url, *args, **kwargs)
        if 200 <= response.status < 300 and response.data:
            try:
                json.loads(response.data)
            except ValueError:
                final = getattr(response.urllib3_response, "url", None)  # after redirects
                raise _NotTheAPI(url, urljoin(url, final) if final else None,
                                 response.data) from None
        return response

    api_client.request = checked
    api_client._kale_insists_on_json = True


@dataclass(frozen=True)
class Connection:
    """Where and as whom Kale talks to Kubeflow Pipelines, and where each choice came from."""

    host: str
    host_source: str
    namespace: str | None
    namespace_source: str
    token_file: str | None = None
    token_source: str | None = None
    context_credentials: bool = False

    @property
    def where(self) -> str:
        """``Kubeflow Pipelines at HOST (namespace NS, from SOURCE)``, the start of every error."""
        if self.namespace:
            return (f"Kubeflow Pipelines at {self.host} "
                    f"(namespace {self.namespace}, from {self.namespace_source})")
        return f"Kubeflow Pipelines at {self.host} (no namespace)"

    @property
    def namespace_text(self) -> str:
        return f"namespace {self.namespace}" if self.namespace else "no namespace"

    @property
    def credentials(self) -> str | None:
        """What identifies the caller, in words; None when nothing is sent."""
        if self.token_file:
            return f"the token in {self.token_file} ({self.token_source})"
        if self.context_credentials:
            return f"the token or cookie in kfp's context file {KFP_CONTEXT_FILE}"
        return None

    @property
    def credentials_sent(self) -> str:
        return f"{self.credentials} was sent" if self.credentials else "no credentials were sent"


def resolve_host(flag: str | None) -> tuple[str, str]:
    """The endpoint and its source: ``--kfp-host``, ``KF_PIPELINES_ENDPOINT`` or in-cluster."""
    if flag:
        return flag, "--kfp-host"
    endpoint = os.environ.get("KF_PIPELINES_ENDPOINT")
    if endpoint:
        return endpoint, "KF_PIPELINES_ENDPOINT"
    return IN_CLUSTER_HOST, "the in-cluster default"


def _kfp_context() -> dict[str, Any]:
    path = os.path.expanduser(KFP_CONTEXT_FILE)
    try:
        with open(path, encoding="utf-8") as file:
            context = json.load(file)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        # kfp.Client would fail on it too, with a bare JSONDecodeError.
        raise KubeflowError(f"kfp's context file {path} cannot be read: {error}",
                            fix="correct or delete it (kfp.Client.set_user_namespace "
                            "writes it again)") from None
    return context if isinstance(context, dict) else {}


def resolve_namespace(flag: str | None, context: dict[str, Any] | None = None
                      ) -> tuple[str | None, str]:
    """The namespace and where it came from, in kfp.Client's order (see the module docstring)."""
    if flag:
        return flag, "--namespace"
    if context is None:
        context = _kfp_context()
    namespace = str(context.get("namespace") or "").strip()
    if namespace:
        return namespace, f"kfp's context file {KFP_CONTEXT_FILE}"
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE_FILE, encoding="utf-8") as file:
            namespace = file.read().strip()
    except OSError:  # not in a pod
        namespace = ""
    if namespace:
        return namespace, "the pod's service account"
    return None, "none given or found"


def resolve_token_file() -> tuple[str | None, str | None]:
    """The token file to send and why: ``KF_PIPELINES_SA_TOKEN_PATH``, else the projected one."""
    named = os.environ.get(TOKEN_PATH_VARIABLE)
    if named:
        return named, TOKEN_PATH_VARIABLE
    if os.path.exists(DEFAULT_TOKEN_FILE):
        return DEFAULT_TOKEN_FILE, "the pod's projected service-account token"
    return None, None


def resolve_connection(host: str | None = None, namespace: str | None = None) -> Connection:
    """Resolve host, namespace and credentials; a named token file must be readable."""
    context = _kfp_context()
    host, host_source = resolve_host(host)
    namespace, namespace_source = resolve_namespace(namespace, context)
    token_file, token_source = resolve_token_file()
    connection = Connection(
        host, host_source, namespace, namespace_source, token_file, token_source,
        context_credentials=bool(context.get("client_authentication_header_value")
                                 or context.get("client_authentication_cookie")))
    if token_file:
        _check_token_file(connection)
    return connection


def _check_token_file(connection: Connection) -> None:
    # kfp reads the file at every request, and a failure there is a bare OSError in the middle
    # of the submission; checking first makes a missing mount one clear error, before any upload.
    path = connection.token_file
    fix = (f"mount the Kubeflow Pipelines token in this pod (a projected serviceAccountToken "
           f"with audience pipelines.kubeflow.org, as Kubeflow's 'access to Kubeflow Pipelines' "
           f"PodDefault does), or point {TOKEN_PATH_VARIABLE} at a readable file that holds a "
           "token" + (", or unset it to send none"
                      if connection.token_source == TOKEN_PATH_VARIABLE else ""))
    try:
        with open(str(path), encoding="utf-8") as file:
            token = file.read().strip()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise KubeflowError(f"{connection.where} was not contacted: the service-account token "
                            f"file {path} ({connection.token_source}) cannot be read: {reason}",
                            fix=fix) from None
    if not token:
        raise KubeflowError(f"{connection.where} was not contacted: the service-account token "
                            f"file {path} ({connection.token_source}) is empty", fix=fix)


def _server_message(error: BaseException) -> str:
    """What the server said: the ``message`` of KFP's JSON error, else the body's start."""
    body = getattr(error, "body", None)
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    text = str(body or "").strip()
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        text = str(payload.get("message") or payload.get("error") or text)
    text = " ".join(text.split())
    return text[:300] + ("..." if len(text) > 300 else "")


def _is_network_error(error: BaseException) -> bool:
    from urllib3.exceptions import HTTPError  # kfp's HTTP client raises these

    return isinstance(error, (HTTPError, ConnectionError))


def _network_reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None) or error  # urllib3's MaxRetryError wraps the cause
    text = re.sub(r"^<[^>]*>: ", "", str(reason))  # drop "<HTTPConnection object at 0x...>: "
    text = text.split("Failed to establish a new connection: ")[-1]
    return f"{type(reason).__name__}: {text}"[:200]


def _says_namespace_is_missing(message: str, namespace: str | None) -> bool:
    text = message.lower()
    return bool(namespace) and "namespace" in text and str(namespace).lower() in text and any(
        phrase in text for phrase in ("not found", "does not exist", "doesn't exist"))


def explain(error: BaseException, connection: Connection, action: str,
             kind: str = "") -> KubeflowError:
    """One paragraph for a failed request: host, namespace, what was refused and what to check.

    ``kind`` is what was being done: "health", "pipeline", "experiment", "run" or "wait".
    """
    where, namespace = connection.where, connection.namespace
    status = getattr(error, "status", None)
    if isinstance(error, OSError) and connection.token_file and \
            getattr(error, "filename", None) == connection.token_file:
        return KubeflowError(f"{where}: the service-account token file {connection.token_file} "
                             f"could not be read while trying to {action}: {error.strerror}",
                             fix=f"check the volume that mounts it, or {TOKEN_PATH_VARIABLE}")
    if isinstance(error, _NotTheAPI):
        page = " ".join(error.body[:120].decode(errors="replace").split())
        # Name the page only when a redirect led there (query strings aside).
        redirected = error.final_url and error.final_url.split("?")[0] != error.url.split("?")[0]
        landed = f" at {error.final_url}" if redirected else ""
        return KubeflowError(
            f"{where} answered the request to {action} with a page{landed}, not the Pipelines "
            f"API's JSON ({page!r}); a Kubeflow gateway answers so when it sends a request "
            f"without valid credentials to its login page ({connection.credentials_sent})",
            fix=f"send credentials: point {TOKEN_PATH_VARIABLE} at a file holding a token for "
            f"this endpoint, or put a session cookie in kfp's context file {KFP_CONTEXT_FILE} "
            "(client_authentication_cookie); or check that --kfp-host is the Pipelines API")
    if status is None:
        if _is_network_error(error):
            if connection.host_source == "the in-cluster default":
                fix = ("no --kfp-host and no KF_PIPELINES_ENDPOINT, so the in-cluster address "
                       "was tried; outside the cluster pass --kfp-host (for example "
                       "http://localhost:8080 after `kubectl port-forward -n kubeflow "
                       "svc/ml-pipeline-ui 8080:80`); --kfp --dry-run writes the package "
                       "without contacting anything")
            else:
                fix = (f"check {connection.host_source} ({connection.host}) and that the "
                       "endpoint is reachable from here; use --kfp --dry-run to write the "
                       "package without contacting anything")
            return KubeflowError(f"{where} could not be reached to {action} "
                                 f"({_network_reason(error)})", fix=fix)
        return KubeflowError(f"{where}: could not {action}: {type(error).__name__}: "
                             f"{str(error)[:300]}",
                             fix="KALE_DEBUG=1 shows the Python traceback")
    reason = f"{status} {getattr(error, 'reason', '') or ''}".strip()
    said = _server_message(error)
    server = f" (the server said: {said})" if said else ""
    if _says_namespace_is_missing(said, namespace):
        return KubeflowError(f"{where} does not know namespace {namespace}: {action} was "
                             f"refused ({reason}){server}",
                             fix=f"check the namespace ({connection.namespace_source}): use "
                             "--namespace with your profile's namespace, as the Kubeflow "
                             "dashboard's namespace menu shows it")
    if status == 401:
        if connection.token_file:
            fix = (f"the token in {connection.token_file} may have expired or be meant for "
                   "another audience (Kubeflow Pipelines expects pipelines.kubeflow.org); check "
                   f"the volume that projects it, or point {TOKEN_PATH_VARIABLE} at a current "
                   "token")
        else:
            fix = (f"send credentials: in a Kubeflow pod mount the pipelines token and set "
                   f"{TOKEN_PATH_VARIABLE}; elsewhere point {TOKEN_PATH_VARIABLE} at a file "
                   "holding a token for this endpoint, or put a token or session cookie in "
                   f"kfp's context file {KFP_CONTEXT_FILE}")
        refused = (f"it did not accept {connection.credentials}" if connection.credentials
                   else "no credentials were sent")
        return KubeflowError(f"{where} refused to {action} ({reason}): {refused}{server}",
                             fix=fix)
    if status == 403:
        if kind == "experiment":
            if namespace:
                return KubeflowError(
                    f"{where} refused to {action} ({reason}): your account may not create "
                    f"experiments in namespace {namespace}{server}",
                    fix=f"ask your Kubeflow admin for a contributor role in the profile of "
                    f"namespace {namespace}, or use --namespace with a profile you contribute to "
                    f"({connection.credentials_sent})")
            return KubeflowError(
                f"{where} refused to {action} ({reason}): your account may not create "
                f"experiments without a namespace{server}",
                fix="this Kubeflow is probably multi-user: use --namespace with your profile's "
                "namespace")
        return KubeflowError(
            f"{where} refused to {action} ({reason}): your account lacks the permission for it "
            f"in {connection.namespace_text}{server}",
            fix=f"check that the credentials are those of an account with access to "
            f"{connection.namespace_text} (a contributor of that profile), or use --namespace "
            f"({connection.credentials_sent})")
    if status == 404 and kind != "wait":
        # Listing, uploading and creating never answer 404 on a Pipelines API: this is
        # another server, or the API lives under a path the host does not include.
        return KubeflowError(
            f"{where} answered {reason} to the request to {action}: no Kubeflow Pipelines API "
            f"(/apis/v2beta1) there{server}",
            fix=f"check {connection.host_source}: it must be the Pipelines API or UI address, "
            "for example http://localhost:8080 after `kubectl port-forward -n kubeflow "
            "svc/ml-pipeline-ui 8080:80`, or https://<your Kubeflow>/pipeline behind the "
            "Kubeflow gateway")
    if status == 400 and not namespace and "namespace" in said.lower():
        return KubeflowError(f"{where} refused to {action} ({reason}){server}",
                             fix="this Kubeflow is multi-user: use --namespace with your "
                             "profile's namespace")
    return KubeflowError(f"{where} answered {reason} to the request to {action}{server}",
                         fix=f"check the host is the Kubeflow Pipelines API and that "
                         f"{connection.namespace_text} is one you may use; KALE_DEBUG=1 "
                         "shows the Python traceback")


def _client(connection: Connection) -> Any:
    import warnings

    from kfp import Client
    from kfp.client import ServiceAccountTokenVolumeCredentials

    class KaleClient(Client):
        """kfp.Client asking the health endpoint once, and remembering what it said: whether
        the server is multi-user, and its release (``tag_name``, which kfp's model of the
        answer leaves out, so the JSON is read as it came)."""

        multi_user: bool | None = None
        healthz: dict[str, Any] | None = None

        def get_kfp_healthz(self, sleep_duration: int = 5) -> Any:
            # kfp.Client asks this while it is built when it has no namespace, and retries any
            # refusal five times five seconds apart, logging a traceback each time; one answer
            # is enough, and a refusal is explained like any other.
            api = self._healthz_api
            _insist_on_json(api.api_client)
            if self.healthz is None:
                response = api.healthz_service_get_healthz(_preload_content=False)
                answer = json.loads(response.data or b"{}")
                self.healthz = answer if isinstance(answer, dict) else {}
                self.multi_user = bool(self.healthz.get("multi_user", False))
            from types import SimpleNamespace

            return SimpleNamespace(multi_user=self.multi_user)  # what kfp.Client reads

    options: dict[str, Any] = {"host": connection.host}
    if connection.namespace:
        # kfp.Client keeps this as the user namespace; without it, it asks the health endpoint.
        options["namespace"] = connection.namespace
    if connection.token_file:
        # Given a host, kfp.Client sends no service-account token unless handed one.
        options["credentials"] = ServiceAccountTokenVolumeCredentials(connection.token_file)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the client's notice about KFP versions
        client = KaleClient(**options)
    _insist_on_json(client._healthz_api.api_client)  # one ApiClient serves every service
    return client


def connect(host: str | None = None, namespace: str | None = None) -> tuple[Any, Connection]:
    """A ``kfp.Client`` for the resolved connection; a multi-user server needs a namespace."""
    connection = resolve_connection(host, namespace)
    try:
        client = _client(connection)
        client.get_kfp_healthz()  # asked once; kfp.Client asks it itself without a namespace
    except Exception as error:
        raise explain(error, connection, "check its health", "health") from error
    if connection.namespace is None and client.multi_user:
        raise KubeflowError(
            f"{connection.where} is multi-user, and no namespace was given or found "
            "(not by --namespace, kfp's context file or a pod's service account)",
            fix="use --namespace with your profile's namespace, as the Kubeflow dashboard's "
            "namespace menu shows it")
    return client, connection


