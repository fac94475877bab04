"""What every connector hands to the mirror: directory object records and page-sized change sets.

Connectors translate their source (Graph JSON, LDAP entries, spreadsheet rows) into these plain
records; `app.directory.service.apply` is the only code that writes them to the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class SourceKind(StrEnum):
    GRAPH = "graph"
    LDAP = "ldap"
    SPREADSHEET = "spreadsheet"
    MANUAL = "manual"
    LEARNED = "learned"

    @property
    def is_authoritative(self) -> bool:
        """Directory sources win address conflicts and decide whether a tenant is ready."""
        return self in (SourceKind.GRAPH, SourceKind.LDAP)


class RecipientKind(StrEnum):
    USER = "user"
    SHARED_MAILBOX = "shared_mailbox"
    ROOM = "room"
    EQUIPMENT = "equipment"
    GROUP = "group"
    CONTACT = "contact"
    PUBLIC_FOLDER = "public_folder"


@dataclass(frozen=True, slots=True)
class RecipientRecord:
    """One directory object as its source sees it now.

    `addresses` are SMTP addresses as the source spells them (prefixes such as `smtp:` already
    stripped, not yet normalized); `primary` is one of them, or None to use the first.
    `external_id` is the source's stable key (Graph `id`, AD `objectGUID`, spreadsheet email).
    """

    external_id: str
    kind: RecipientKind
    addresses: tuple[str, ...]
    primary: str | None = None
    display_name: str | None = None
    enabled: bool = True
    attributes: Mapping[str, Any] = field(default_factory=dict)


# Direct group -> member edges, both ends named by the connector's external ids: group -> its
# members. Kept grouped as sources deliver them (a Graph group's members@delta slice, an LDAP
# `member` list), never one object per edge: a full round carries a million edges.
Edges = dict[str, list[str]]


def edge_count(edges: Edges) -> int:
    return sum(map(len, edges.values()))


@dataclass(slots=True)
class ChangeSet:
    """One page of changes from one connector, applied in one transaction with its cursor."""

    upserts: list[RecipientRecord] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    member_adds: Edges = field(default_factory=dict)
    member_removes: Edges = field(default_factory=dict)
    # Full member lists, replacing what was stored (spreadsheet and LDAP full rounds).
    member_sets: dict[str, list[str]] = field(default_factory=dict)
