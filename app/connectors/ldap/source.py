"""Active Directory as a runner `Source`: one stream of users, groups and contacts.

The cursor the runner stores is JSON:
  mid full round  {"mode": "full", "full_started_at": ISO}   paged-search cookies die with their
                  connection, so a full round interrupted mid-way starts over (same round id,
                  so the sweep stays correct)
  after a round   {"mode": "incremental", "dc": LdapCursor, "full_started_at": ISO,
                   "deletions_visible": bool}

A full round is requested by the source itself (it raises SyncStateLost, the runner clears the
cursor and sweeps after the final page) when the last one is older than `full_round_interval`:
incremental rounds by uSNChanged miss objects moved out of the base DNs or out of the filter,
and miss deletions altogether when the account cannot read CN=Deleted Objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from ldap3.core import exceptions as lx

from app.connectors.base import Page, SourceKind
from app.connectors.ldap.client import (
    LdapError,
    LdapPermanentError,
    LdapTemporaryError,
    translate,
)
from app.connectors.ldap.config import LdapSettings
from app.connectors.ldap.reader import (
    LdapCursor,
    LdapCursorInvalid,
    LdapPage,
    full_round,
    incremental_round,
)
from app.errors import PermanentSourceError, SyncStateLost, TemporarySourceError

logger = logging.getLogger(__name__)

STREAM = "directory"
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _source_error(exc: Exception, settings: LdapSettings) -> Exception:
    """LDAP errors in the runner's vocabulary; the message names the DC, never a password."""
    if isinstance(exc, LdapCursorInvalid):
        return SyncStateLost(f"LDAP cursor cannot continue: {exc}")
    if isinstance(exc, lx.LDAPException | OSError) and settings.urls:
        exc = translate(exc, settings.urls[0], settings.tls_server_name)
    if isinstance(exc, LdapTemporaryError):
        return TemporarySourceError(f"LDAP domain controller unavailable: {exc}")
    if isinstance(exc, LdapPermanentError | LdapError):
        return PermanentSourceError(f"LDAP configuration or rights problem: {exc}")
    return exc


class LdapSource:
    """Full rounds by paged search, incremental rounds by uSNChanged (see module docstring).

    `domains`, when given, is the complete list of accepted domains this connector owns (AD has
    no list of mail domains without the Exchange schema); None leaves domains to the operator.
    """

    kind = SourceKind.LDAP
    streams: tuple[str, ...] = (STREAM,)

    def __init__(
        self,
        settings: LdapSettings,
        *,
        domains: Sequence[str] | None = None,
        clock: Clock = _utcnow,
    ) -> None:
        self.settings = settings
        self.domains = list(domains) if domains is not None else None
        self.clock = clock

    def full_round_due(self, cursor: dict[str, Any]) -> bool:
        interval = self.settings.full_round_interval
        if interval.total_seconds() <= 0:
            return False
        started = cursor.get("full_started_at")
        if not started:
            return True
        return self.clock() - datetime.fromisoformat(started) >= interval

    async def pages(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        if stream != STREAM:
            raise PermanentSourceError(f"the LDAP source has no stream {stream!r}")
        if cursor is None or cursor.get("mode") != "incremental":
            async for page in self._full():
                yield page
            return
        if self.full_round_due(cursor):
            raise SyncStateLost(
                "periodic LDAP full round due (finds deletions and objects moved out of scope)"
            )
        try:
            dc_cursor = LdapCursor.from_json(cursor["dc"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SyncStateLost(f"stored LDAP cursor unreadable: {type(exc).__name__}") from None
        async for page in self._incremental(dc_cursor, cursor):
            yield page

    async def _full(self) -> AsyncIterator[Page]:
        started = self.clock().isoformat()
        async for ldap_page in self._drive(full_round(self.settings)):
            if not ldap_page.final or ldap_page.cursor is None:
                yield Page(ldap_page.changes, {"mode": "full", "full_started_at": started})
                continue
            logger.info(
                "ldap full round read: dc=%s stats=%s", ldap_page.cursor.dc_url, ldap_page.stats
            )
            yield Page(
                ldap_page.changes,
                {
                    "mode": "incremental",
                    "dc": ldap_page.cursor.to_json(),
                    "full_started_at": started,
                    "deletions_visible": None,
                },
                final=True,
                domains=self.domains,
            )

    async def _incremental(
        self, dc_cursor: LdapCursor, stored: dict[str, Any]
    ) -> AsyncIterator[Page]:
        async for ldap_page in self._drive(incremental_round(self.settings, dc_cursor)):
            if not ldap_page.final or ldap_page.cursor is None:
                # Pages before the final one carry no USN: resuming repeats this round.
                yield Page(ldap_page.changes, stored)
                continue
            logger.info(
                "ldap incremental round read: dc=%s stats=%s deletions_visible=%s",
                ldap_page.cursor.dc_url,
                ldap_page.stats,
                ldap_page.deletions_visible,
            )
            yield Page(
                ldap_page.changes,
                {
                    "mode": "incremental",
                    "dc": ldap_page.cursor.to_json(),
                    "full_started_at": stored.get("full_started_at"),
                    "deletions_visible": ldap_page.deletions_visible,
                },
                final=True,
                domains=self.domains,
            )

    async def _drive(self, pages: Iterator[LdapPage]) -> AsyncIterator[LdapPage]:
        """Run the blocking reader in a worker thread one page at a time; always close it."""
        try:
            while True:
                try:
                    page = await asyncio.to_thread(next, pages, None)
                except Exception as exc:
                    raise _source_error(exc, self.settings) from None
                if page is None:
                    return
                yield page
        finally:
            # Closing unbinds (a network call); a generator still running in a cancelled
            # thread cannot be closed from here and ends with that thread.
            if isinstance(pages, Generator):
                with contextlib.suppress(ValueError, LdapError, lx.LDAPException, OSError):
                    await asyncio.to_thread(pages.close)
