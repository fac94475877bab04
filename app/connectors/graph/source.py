"""Microsoft Graph delta rounds as a connector `Source`: users, groups (with members), contacts.

A round follows `@odata.nextLink` to the page that carries `@odata.deltaLink`; each page's link is
its resume point and the deltaLink starts the next round (Microsoft Learn "Use delta query to track
changes in Microsoft Graph data", https://learn.microsoft.com/graph/delta-query-overview). The
runner commits each page with its cursor, so a crash resumes from the last committed link.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from app.connectors.base import Page, SourceKind, edge_count
from app.connectors.graph.client import (
    DEFAULT_SELECT,
    ClientStats,
    GraphBadResponse,
    GraphClient,
    GraphPermanentError,
    GraphSyncStateLost,
    GraphTemporaryError,
)
from app.connectors.graph.config import GraphSettings
from app.connectors.graph.mapping import accepted_domains, map_page
from app.errors import PermanentSourceError, SyncStateLost, TemporarySourceError

logger = logging.getLogger(__name__)

T = TypeVar("T")
STREAM_ORDER = ("users", "groups", "contacts")  # users first: its final page carries the domains
# A client (connections, credential, cached token) outlives its round by this long: webhook-driven
# rounds come seconds apart and the streams of one cycle back to back, and building a client
# (TLS contexts, a token request) costs more CPU than a small round itself.
CLIENT_IDLE_SECONDS = 60.0
STREAM_PERMISSIONS = {
    "users": "User.Read.All",
    "groups": "GroupMember.Read.All",
    "contacts": "OrgContact.Read.All",
}


@dataclass(slots=True)
class SourceStats:
    """Totals over the rounds this source served; `apply_seconds` is the time the runner held
    each page (database apply and commit), so a benchmark can say where a round's time went."""

    pages: int = 0
    objects: int = 0
    skipped: int = 0
    map_seconds: float = 0.0
    apply_seconds: float = 0.0
    client: ClientStats = field(default_factory=ClientStats)

    def add_client(self, stats: ClientStats) -> None:
        self.client.requests += stats.requests
        self.client.bytes += stats.bytes
        self.client.send_seconds += stats.send_seconds
        self.client.parse_seconds += stats.parse_seconds


class GraphSource:
    """One tenant's Graph directory. Rounds share one client while they come less than
    `client_idle` seconds apart; an idle client is closed by a task of the event loop (so it
    is also closed when that loop shuts down), a failed round closes it at once, and so does
    `aclose()`."""

    kind = SourceKind.GRAPH

    def __init__(
        self,
        settings: GraphSettings,
        *,
        client_factory: Callable[[], GraphClient] | None = None,
        client_idle: float = CLIENT_IDLE_SECONDS,
    ) -> None:
        unknown = sorted(set(settings.streams) - set(STREAM_ORDER))
        if unknown:
            raise PermanentSourceError(
                f"unknown Graph streams {unknown}: choose from {', '.join(STREAM_ORDER)}"
            )
        self.streams: tuple[str, ...] = tuple(s for s in STREAM_ORDER if s in settings.streams)
        if not self.streams:
            raise PermanentSourceError("no Graph stream configured (ROSTER_GRAPH__STREAMS)")
        self._settings = settings
        self._client_factory = client_factory or (lambda: GraphClient.from_settings(settings))
        self._client_idle = client_idle
        self._client: GraphClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._rounds = 0  # rounds using the client now
        self._closer: asyncio.Task[None] | None = None
        self.stats = SourceStats()

    async def pages(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        """One delta round of `stream`; cursor None starts a full round."""
        if stream not in self.streams:
            raise PermanentSourceError(f"Graph stream {stream!r} is not configured")
        select = DEFAULT_SELECT[stream]
        fingerprint = _fingerprint(select)
        client = self._acquire()
        released = False
        try:
            # /domains has no delta: read it every round (Microsoft Learn "List domains").
            domains = await _translated(stream, client.fetch_domains())
            accepted = accepted_domains(domains)
            if not accepted:
                # Every tenant has at least its verified *.onmicrosoft.com Email domain; an
                # empty list would turn every address into domain_not_accepted (a reject).
                raise PermanentSourceError("Graph lists no verified domain with the Email service")
            names = sorted(accepted)
            url = self._start_url(client, stream, cursor, names, fingerprint)
            logger.info(
                "graph round started: stream=%s mode=%s accepted_domains=%d",
                stream,
                "full" if cursor is None else "resume",
                len(names),
            )
            first = True
            while True:
                delta = await _translated(stream, client.fetch_page(url))
                started = time.perf_counter()
                mapped = map_page(stream, delta.objects, accepted=accepted)
                self.stats.map_seconds += time.perf_counter() - started
                skipped = mapped.skipped + delta.dropped
                self.stats.pages += 1
                self.stats.objects += len(delta.objects)
                self.stats.skipped += skipped
                if skipped:
                    logger.warning(
                        "graph objects without an id skipped: stream=%s count=%d", stream, skipped
                    )
                link = delta.delta_link if delta.is_final else delta.next_link
                if link is None:  # fetch_page guarantees one of them; never store a None cursor
                    raise PermanentSourceError("graph page without a next or delta link")
                page = Page(
                    mapped.changes,
                    {"link": link, "domains": names, "select": fingerprint},
                    final=delta.is_final,
                    # On the first page too, so the tenant's domains route lookups (to tempfail,
                    # not domain_not_accepted) while its first full round is still running.
                    domains=names
                    if stream == self.streams[0] and (first or delta.is_final)
                    else None,
                )
                first = False
                logger.debug(
                    "graph page mapped: stream=%s objects=%d upserts=%d deletes=%d "
                    "soft_deleted=%d member_adds=%d member_removes=%d final=%s",
                    stream,
                    len(delta.objects),
                    len(mapped.changes.upserts),
                    len(mapped.changes.deletes),
                    len(mapped.soft_deleted),
                    edge_count(mapped.changes.member_adds),
                    edge_count(mapped.changes.member_removes),
                    delta.is_final,
                )
                if delta.is_final:
                    # All network I/O is done: release before the last yield, because the
                    # runner stops iterating after the final page.
                    released = True
                    await self._release(client, keep=True)
                    yield page
                    return
                held = time.perf_counter()
                yield page
                self.stats.apply_seconds += time.perf_counter() - held
                url = link
        finally:
            if not released:  # a failed or abandoned round: close the client now
                await self._release(client, keep=False)

    async def aclose(self) -> None:
        """Close the shared client now (a later round builds a new one)."""
        if self._closer is not None:
            self._closer.cancel()
            self._closer = None
        client, self._client = self._client, None
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await self._close(client)

    def _acquire(self) -> GraphClient:
        """The client for a round: the shared one, or a new one on first use, after an idle
        close, or when the event loop changed (connections belong to their loop)."""
        loop = asyncio.get_running_loop()
        if self._closer is not None:
            self._closer.cancel()
            self._closer = None
        if self._client is None or self._client_loop is not loop:
            try:
                self._client = self._client_factory()
            except ValueError as exc:  # e.g. a non-https base URL or authority
                raise PermanentSourceError(f"Graph settings are not usable: {exc}") from exc
            self._client_loop = loop
        self._rounds += 1
        return self._client

    async def _release(self, client: GraphClient, *, keep: bool) -> None:
        self._rounds -= 1
        self.stats.add_client(client.stats)
        client.stats = ClientStats()
        if self._rounds > 0 or client is not self._client:
            return  # another round still uses it, or it was already replaced
        if keep:
            self._closer = asyncio.get_running_loop().create_task(
                self._close_when_idle(client), name="graph-client-idle"
            )
        else:
            self._client = None
            await self._close(client)

    async def _close_when_idle(self, client: GraphClient) -> None:
        try:
            await asyncio.sleep(self._client_idle)
        finally:
            # Also on cancellation by the loop's shutdown; a new round cancels this task
            # before it uses the client, and then the client stays.
            if self._rounds == 0 and self._client is client:
                self._client = None
                await self._close(client)

    def _start_url(
        self,
        client: GraphClient,
        stream: str,
        cursor: dict[str, Any] | None,
        domains: Sequence[str],
        fingerprint: str,
    ) -> str:
        """Where this round starts; a resume point that no longer fits means a full round."""
        if cursor is None:
            return client.initial_delta_url(stream, DEFAULT_SELECT[stream])
        link = cursor.get("link")
        if not isinstance(link, str) or not client.is_own_link(link):
            raise SyncStateLost(f"the stored {stream} link does not belong to the Graph endpoint")
        if cursor.get("select") != fingerprint:
            # Parameters are baked into the links: a new $select needs a new full round.
            raise SyncStateLost(f"the tracked {stream} properties changed")
        if cursor.get("domains") != list(domains):
            # Addresses were filtered by the old domain list: only a full round (and its sweep)
            # makes the mirror match the new one.
            raise SyncStateLost("the tenant's accepted domains changed")
        return link

    async def _close(self, client: GraphClient) -> None:
        try:
            await client.aclose()
        except Exception as exc:  # closing must never hide the round's own outcome
            logger.warning("graph client close failed: error=%s", type(exc).__name__)


async def _translated(stream: str, call: Awaitable[T]) -> T:
    """Graph client errors -> the runner's SourceError tree. Messages never hold links/tokens."""
    try:
        return await call
    except GraphSyncStateLost as exc:
        raise SyncStateLost(str(exc)) from exc
    except GraphTemporaryError as exc:
        raise TemporarySourceError(str(exc), delay=exc.delay) from exc
    except GraphPermanentError as exc:
        message = str(exc)
        if "403" in message and stream in STREAM_PERMISSIONS:
            message += f"; the {stream} stream needs {STREAM_PERMISSIONS[stream]}" + (
                " (or set ROSTER_GRAPH__STREAMS=users,groups)" if stream == "contacts" else ""
            )
        raise PermanentSourceError(message) from exc
    except GraphBadResponse as exc:
        # A page we cannot trust fails the round before anything of it is applied.
        raise PermanentSourceError(str(exc)) from exc


def _fingerprint(select: Sequence[str]) -> str:
    return hashlib.sha256(",".join(select).encode()).hexdigest()[:16]
