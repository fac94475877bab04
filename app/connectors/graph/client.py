"""A thin Graph client for delta rounds: SDK transport, raw pages, our own link following.

Pages go through msgraph-sdk's request adapter (authentication, retry/`Retry-After` middleware) as
raw bytes and are parsed with orjson: typed models cost ~7 ms per object, kiota turns GUID strings
in `additional_data` into UUIDs, and `PageIterator` drops `@odata.deltaLink`
(docs/outside-behaviour.md §6).
"""

from __future__ import annotations

import email.utils
import logging
import ssl
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self
from urllib.parse import urlsplit

import httpx
import orjson
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from kiota_abstractions.api_error import APIError
from msgraph._version import VERSION as MSGRAPH_VERSION
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_service_client import GraphServiceClient
from msgraph_core import (
    APIVersion,
    AzureIdentityAuthenticationProvider,
    GraphClientFactory,
)
from msgraph_core.middleware.options import (
    GraphTelemetryHandlerOption,
)

from app.connectors.graph.credentials import (
    CredentialFactory,
    GraphCredentialSettings,
    credential_factory,
)
from app.connectors.graph.transport import AiohttpTransport
from app.logging import RedactingFilter

logger = logging.getLogger(__name__)
# httpx logs every request URL at INFO, and delta links carry their tokens (docs/contracts.md §1):
# mask them where the record is made, whatever handlers the process installs.
if not any(isinstance(f, RedactingFilter) for f in logging.getLogger("httpx").filters):
    logging.getLogger("httpx").addFilter(RedactingFilter())

DEFAULT_BASE_URL = "https://graph.microsoft.com/v1.0"
DEFAULT_RETRY_DELAY = 30.0
# Properties tracked by the delta rounds; only $select-ed properties are tracked
# (https://learn.microsoft.com/graph/delta-query-users, "Track changes to users").
USER_SELECT = (
    "id", "userPrincipalName", "mail", "proxyAddresses", "otherMails", "accountEnabled",
    "userType", "displayName", "givenName", "surname", "department", "jobTitle", "companyName",
    "officeLocation", "mailNickname",
)  # fmt: skip
GROUP_SELECT = (
    "id", "displayName", "mail", "mailNickname", "mailEnabled", "securityEnabled", "groupTypes",
    "proxyAddresses", "members",
)  # fmt: skip
CONTACT_SELECT = ("id", "displayName", "mail", "mailNickname", "proxyAddresses", "companyName")
DEFAULT_SELECT = {"users": USER_SELECT, "groups": GROUP_SELECT, "contacts": CONTACT_SELECT}
# Graph error codes meaning "start a full round" (https://learn.microsoft.com/graph/errors;
# expired directory tokens: https://devblogs.microsoft.com/microsoft365dev/duration-of-change-
# tracking-tokens-for-identity-and-education-resources/).
SYNC_STATE_CODES = frozenset({"syncStateNotFound", "resyncRequired", "syncStateInvalid"})


class GraphError(Exception):
    """Base of the errors this client raises; messages never hold tokens or full links."""


class GraphSyncStateLost(GraphError):
    """The delta token expired or the tenant was reset (400 syncStateNotFound, 410): full round."""


class GraphTemporaryError(GraphError):
    """Throttling, 5xx or network trouble that outlasted the SDK's retries: wait `delay` s."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


class GraphPermanentError(GraphError):
    """Bad credentials or missing permissions: retrying will not help."""


class GraphBadResponse(GraphError):
    """A page that is not Graph JSON, or a link that leaves the configured Graph host."""


@dataclass(frozen=True, slots=True)
class DeltaPage:
    objects: list[dict[str, Any]]
    next_link: str | None
    delta_link: str | None
    dropped: int = 0  # entries of `value` that were not JSON objects (counted, never applied)

    @property
    def is_final(self) -> bool:
        return self.delta_link is not None


@dataclass(slots=True)
class ClientStats:
    """Where a round's time goes on the client side (benchmarks, debug logs)."""

    requests: int = 0
    bytes: int = 0
    send_seconds: float = 0.0  # token, TLS, simulator/Graph and transfer, through the SDK
    parse_seconds: float = 0.0  # orjson


class GraphClientSettings(GraphCredentialSettings, Protocol):
    base_url: str


class GraphClient:
    """One tenant's Graph endpoint; `credential_factory` is called again after a 401."""

    @classmethod
    def from_settings(cls, settings: GraphClientSettings, **options: Any) -> Self:
        """Build from `Settings.graph` (ROSTER_GRAPH__*): credential, base URL and CA bundle."""
        return cls(
            credential_factory=credential_factory(settings),
            base_url=settings.base_url,
            ca_bundle=settings.ca_bundle,
            **options,
        )

    def __init__(
        self,
        *,
        credential_factory: CredentialFactory,
        base_url: str = DEFAULT_BASE_URL,
        ca_bundle: str | None = None,
        timeout: float = 60.0,
        default_retry_delay: float = DEFAULT_RETRY_DELAY,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        if parts.scheme != "https" and parts.hostname not in ("localhost", "127.0.0.1", "::1"):
            raise ValueError("the Graph base URL must be https")
        self._origin = (parts.scheme, parts.netloc.lower())
        self._base_path = parts.path.rstrip("/")
        # Graph's app-only scope is "<resource>/.default"; for national clouds the host changes.
        self._scopes = [f"{parts.scheme}://{parts.hostname}/.default"]
        self._host = parts.hostname or ""
        self._credential_factory = credential_factory
        self._default_delay = default_retry_delay
        # The CA store httpx would use (certifi, or SSL_CERT_FILE), or the configured bundle.
        verify = (
            ssl.create_default_context(cafile=ca_bundle)
            if ca_bundle
            else httpx.create_ssl_context()
        )
        # msgraph-core wraps the transport in AsyncGraphTransport, whose aclose() does not close
        # the wrapped one: keep our own handle so aclose() really releases the connections.
        self._transport = AiohttpTransport(verify=verify)
        self._http = GraphClientFactory.create_with_default_middleware(
            client=httpx.AsyncClient(
                transport=self._transport, timeout=httpx.Timeout(timeout, connect=10.0)
            ),
            options={
                GraphTelemetryHandlerOption.get_key(): GraphTelemetryHandlerOption(
                    api_version=APIVersion.v1, sdk_version=MSGRAPH_VERSION
                )
            },
        )
        self._credential: AsyncTokenCredential = credential_factory()
        self.stats = ClientStats()
        self._sdk = self._build_sdk(self._credential)

    def _build_sdk(self, credential: AsyncTokenCredential) -> GraphServiceClient:
        auth = AzureIdentityAuthenticationProvider(
            credential, scopes=self._scopes, allowed_hosts=[self._host]
        )
        adapter = GraphRequestAdapter(auth, client=self._http)
        # On the adapter, not the httpx client: an httpx base_url gets a "/" appended.
        adapter.base_url = self.base_url
        return GraphServiceClient(request_adapter=adapter)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        await self.aclose()

    async def aclose(self) -> None:
        await self._credential.close()
        await self._http.aclose()
        await self._transport.aclose()

    # ---- delta
    def initial_delta_url(self, resource: str, select: Sequence[str] | None = None) -> str:
        """The first URL of a full round; parameters are baked into the links that follow."""
        fields = select if select is not None else DEFAULT_SELECT[resource]
        return f"{self.base_url}/{resource}/delta?$select={','.join(fields)}"

    async def fetch_page(self, url: str) -> DeltaPage:
        self._check_link(url)
        body = await self._get_json(url)
        values = body.get("value")
        if not isinstance(values, list):
            raise GraphBadResponse(f"graph page of {self._describe(url)} has no 'value' list")
        next_link = body.get("@odata.nextLink")
        delta_link = body.get("@odata.deltaLink")
        if (next_link is None) == (delta_link is None):
            raise GraphBadResponse(
                f"graph page of {self._describe(url)} needs exactly one of nextLink/deltaLink"
            )
        for link in (next_link, delta_link):
            if link is not None:
                if not isinstance(link, str):
                    raise GraphBadResponse("graph link is not a string")
                self._check_link(link)
        objects = [v for v in values if isinstance(v, dict)]
        return DeltaPage(objects, next_link, delta_link, len(values) - len(objects))

    async def iter_pages(self, url: str) -> AsyncIterator[DeltaPage]:
        """Follow nextLinks to the page carrying the deltaLink (an empty page may have a next)."""
        while True:
            page = await self.fetch_page(url)
            yield page
            if page.next_link is None:
                return
            url = page.next_link

    # ---- domains
    async def fetch_domains(self) -> list[dict[str, Any]]:
        """GET /domains (no delta for domains: poll). Domain.Read.All."""
        url: str | None = f"{self.base_url}/domains"
        domains: list[dict[str, Any]] = []
        while url is not None:
            self._check_link(url)
            body = await self._get_json(url)
            values = body.get("value")
            if not isinstance(values, list):
                raise GraphBadResponse("graph domains answer has no 'value' list")
            domains.extend(v for v in values if isinstance(v, dict))
            nxt = body.get("@odata.nextLink")
            url = nxt if isinstance(nxt, str) else None
        return domains

    # ---- transport
    async def _get_json(self, url: str) -> dict[str, Any]:
        started = time.perf_counter()
        raw = await self._send(url)
        sent = time.perf_counter()
        try:
            body = orjson.loads(raw or b"")
        except orjson.JSONDecodeError as exc:
            raise GraphBadResponse(f"graph answer for {self._describe(url)} is not JSON") from exc
        if not isinstance(body, dict):
            raise GraphBadResponse(f"graph answer for {self._describe(url)} is not a JSON object")
        elapsed = time.perf_counter() - started
        self.stats.requests += 1
        self.stats.bytes += len(raw)
        self.stats.send_seconds += sent - started
        self.stats.parse_seconds += elapsed - (sent - started)
        logger.debug("graph GET %s: %d bytes in %.3fs", self._describe(url), len(raw), elapsed)
        return body

    async def _send(self, url: str) -> bytes:
        for attempt in (1, 2):
            # One builder serves every link: with_url sends the URL unchanged, whereas
            # RequestInformation(GET, url) treats it as a URI template and drops "{...}".
            info = self._sdk.users.delta.with_url(url).to_get_request_information()
            # Background sync yields to interactive traffic (Graph throttling guidance).
            info.headers.try_add("x-ms-throttle-priority", "low")
            try:
                raw: bytes | None = await self._sdk.request_adapter.send_primitive_async(
                    info, "bytes", {"XXX": ODataError}
                )
                return raw or b""
            except APIError as exc:
                status = exc.response_status_code or 0
                if status == 401 and attempt == 1:
                    logger.warning("graph answered 401 for %s: refreshing the token once",
                                   self._describe(url))  # fmt: skip
                    await self._refresh_credential()
                    continue
                raise self._map_api_error(exc, url) from exc
            except ClientAuthenticationError as exc:
                raise GraphPermanentError(
                    f"graph authentication failed: {_first_line(exc)}"
                ) from exc
            except ServiceRequestError as exc:
                raise GraphTemporaryError(
                    f"token endpoint unreachable: {type(exc).__name__}", self._default_delay
                ) from exc
            except httpx.TransportError as exc:
                raise GraphTemporaryError(
                    f"graph unreachable ({type(exc).__name__}) for {self._describe(url)}",
                    self._default_delay,
                ) from exc
        raise GraphPermanentError("graph rejected a freshly issued token (401)")

    async def _refresh_credential(self) -> None:
        """azure-identity caches tokens: a new credential is the one way to force a new token."""
        old = self._credential
        self._credential = self._credential_factory()
        self._sdk = self._build_sdk(self._credential)
        await old.close()

    def _map_api_error(self, exc: APIError, url: str) -> GraphError:
        status = exc.response_status_code or 0
        code = ""
        if isinstance(exc, ODataError) and exc.error is not None:
            code = exc.error.code or ""
        where = self._describe(url)
        if status == 410 or code in SYNC_STATE_CODES:
            return GraphSyncStateLost(f"graph sync state lost for {where}: {status} {code}")
        if status in (429, 503, 504) or status >= 500:
            # msgraph-sdk's RetryHandler already retried 429/503/504 up to 3 times and hands a
            # Retry-After >= 180 s straight back; honour Retry-After
            # (https://learn.microsoft.com/graph/throttling).
            delay = _retry_after(exc.response_headers) or self._default_delay
            return GraphTemporaryError(f"graph answered {status} {code} for {where}", delay)
        if status == 401:
            return GraphPermanentError(f"graph rejected a freshly issued token for {where} (401)")
        if status == 403:
            return GraphPermanentError(
                f"graph denied access to {where} (403 {code}): the application needs "
                "User.Read.All, GroupMember.Read.All and Domain.Read.All"
            )
        return GraphPermanentError(f"graph answered {status} {code} for {where}")

    def is_own_link(self, url: str) -> bool:
        """Whether a link points at this client's Graph endpoint (same origin and version)."""
        parts = urlsplit(url)
        return (parts.scheme, parts.netloc.lower()) == self._origin and (
            parts.path == self._base_path or parts.path.startswith(self._base_path + "/")
        )

    def _check_link(self, url: str) -> None:
        if not self.is_own_link(url):
            parts = urlsplit(url)
            raise GraphBadResponse(
                f"refusing a Graph link to {parts.scheme}://{parts.hostname} outside {self._host}"
            )

    def _describe(self, url: str) -> str:
        """The path of a link and which token it carries, never the token itself."""
        parts = urlsplit(url)
        kind = "skiptoken" if "skiptoken=" in parts.query else (
            "deltatoken" if "deltatoken=" in parts.query else "initial"
        )  # fmt: skip
        return f"{parts.path} ({kind})"


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    value = None
    for key, item in headers.items():
        if key.lower() == "retry-after":
            value = item
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]
