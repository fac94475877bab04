"""What a connector is to the runner: a source of pages, each a change set plus a resume point.

The record types live in `app.directory.records` (the directory layer must not import
connectors); connectors import them from here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from app.directory.records import (
    ChangeSet,
    Edges,
    RecipientKind,
    RecipientRecord,
    SourceKind,
    edge_count,
)

__all__ = [
    "ChangeSet",
    "Edges",
    "Page",
    "RecipientKind",
    "RecipientRecord",
    "Source",
    "SourceKind",
    "edge_count",
]


@dataclass(slots=True)
class Page:
    """One page of a round. `cursor` is where to resume after it (committed with its changes);
    the final page's cursor starts the next incremental round. `domains`, when set, is the
    source's complete list of accepted domains (Graph `/domains`)."""

    changes: ChangeSet
    cursor: dict[str, Any]
    final: bool = False
    domains: list[str] | None = None


class Source(Protocol):
    kind: SourceKind
    streams: tuple[str, ...]

    def pages(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        """Yield the pages of one round; `cursor` None starts a full round.

        Raises TemporarySourceError (retry later), PermanentSourceError (stop and report) or
        SyncStateLost (the resume point expired: the runner starts a full round)."""
        ...
