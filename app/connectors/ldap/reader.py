"""Full and incremental reads of users, groups and contacts from one domain controller.

Both reads are generators of `LdapPage`s so the runner can commit page by page as they
arrive; only the final page carries the cursor. They block (ldap3): drive them with
`await asyncio.to_thread(next, pages, None)`.

USNs are local to one DC: a cursor is only valid on the DC (URL and `invocationId`) that issued
it. Ref: https://learn.microsoft.com/windows/win32/ad/polling-for-changes-using-usnchanged
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import ldap3
from ldap3.core import exceptions as lx
from ldap3.protocol.microsoft import extended_dn_control, show_deleted_control
from ldap3.utils.conv import escape_bytes

from app.connectors.base import ChangeSet, RecipientKind, RecipientRecord
from app.connectors.ldap.client import LdapError, LdapSession, connect, translate
from app.connectors.ldap.config import LdapSettings
from app.connectors.ldap.mapping import (
    RECIPIENT_ATTRIBUTES,
    RECIPIENT_FILTER,
    MemberValue,
    guid_from_bytes,
    lower_keys,
    parse_member_value,
    to_record,
)

logger = logging.getLogger(__name__)

PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"
GUID_BATCH = 100


class LdapCursorInvalid(LdapError):
    """The stored cursor cannot be continued on this DC: the caller must run a full round."""


@dataclass(frozen=True, slots=True)
class LdapCursor:
    """High-water mark of one DC; JSON-serialisable through `to_json`/`from_json`."""

    dc_url: str
    invocation_id: str
    highest_usn: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LdapCursor:
        return cls(
            dc_url=str(data["dc_url"]),
            invocation_id=str(data["invocation_id"]),
            highest_usn=int(data["highest_usn"]),
        )


@dataclass(slots=True)
class LdapPage:
    """One page of changes; `cursor` is set on the final page only.

    `deletions_visible` is False when the account cannot read `CN=Deleted Objects`: incremental
    rounds then miss deletions and the caller must schedule full rounds with a sweep.
    """

    changes: ChangeSet
    final: bool = False
    cursor: LdapCursor | None = None
    deletions_visible: bool = True
    stats: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DcState:
    invocation_id: str
    highest_usn: int
    default_naming_context: str


def _entries(conn: ldap3.Connection) -> list[dict[str, Any]]:
    """Search result entries of the last search, without continuation references."""
    return [e for e in conn.response or [] if e.get("type") == "searchResEntry"]


def _first(raw: dict[str, Any], name: str) -> bytes | None:
    values = lower_keys(raw).get(name.lower())
    return values[0] if values else None


def read_dc_state(session: LdapSession) -> DcState:
    """rootDSE `highestCommittedUSN` and the DC's `invocationId` (from its NTDS Settings object)."""
    conn = session.connection
    try:
        conn.search(
            "",
            "(objectClass=*)",
            ldap3.BASE,
            attributes=["dsServiceName", "highestCommittedUSN", "defaultNamingContext"],
        )
        root = _entries(conn)[0]["raw_attributes"]
        service = (_first(root, "dsServiceName") or b"").decode()
        usn = int(_first(root, "highestCommittedUSN") or b"0")
        naming_context = (_first(root, "defaultNamingContext") or b"").decode()
        conn.search(service, "(objectClass=*)", ldap3.BASE, attributes=["invocationId"])
        invocation = _first(_entries(conn)[0]["raw_attributes"], "invocationId")
    except (lx.LDAPException, OSError, IndexError) as exc:
        raise translate(exc, session.url) from None
    if not invocation or not service:
        raise LdapCursorInvalid(f"{session.url} did not return dsServiceName/invocationId")
    return DcState(guid_from_bytes(invocation), usn, naming_context)


def paged_search(
    session: LdapSession,
    base: str,
    search_filter: str,
    attributes: Sequence[str],
    page_size: int,
    controls: list[Any] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Yield search result entries a page at a time (simple paged results control, RFC 2696)."""
    conn = session.connection
    cookie: bytes | None = None
    while True:
        try:
            conn.search(
                base,
                search_filter,
                ldap3.SUBTREE,
                attributes=list(attributes),
                paged_size=page_size,
                paged_cookie=cookie,
                controls=controls,
            )
        except (lx.LDAPException, OSError) as exc:
            raise translate(exc, session.url) from None
        # Read the cookie before yielding: the consumer may search on this connection (ranges).
        control = (conn.result.get("controls") or {}).get(PAGED_RESULTS_OID) or {}
        cookie = control.get("value", {}).get("cookie")
        # Continuation references (DomainDnsZones, ...) are skipped, as AD returns them at roots.
        yield _entries(conn)
        if not cookie:
            return


def _split_dn(dn: str) -> str:
    """Entry names come back in extended form with the extended DN control: keep the DN."""
    member = parse_member_value(dn)
    return member.dn if member else dn


def _ranged_key(raw: dict[str, Any]) -> tuple[str, list[bytes]] | None:
    for key, values in raw.items():
        lowered = key.lower()
        if lowered == "member" or lowered.startswith("member;range="):
            return lowered, list(values)
    return None


def fetch_members(
    session: LdapSession, dn: str, first: tuple[str, list[bytes]] | None, range_size: int
) -> list[MemberValue]:
    """All `member` values of a group, following `member;range=lo-hi` windows to `*`.

    AD caps each window at MaxValRange (1,500); Samba does not, so ranges are requested
    explicitly. Ref: https://learn.microsoft.com/windows/win32/adsi/attribute-range-retrieval
    """
    values: list[bytes] = []
    current = first
    while current is not None:
        key, chunk = current
        values.extend(chunk)
        if key == "member":
            break
        high = key.partition(";range=")[2].partition("-")[2]
        if high == "*":
            break
        low = int(high) + 1
        try:
            session.connection.search(
                dn,
                "(objectClass=*)",
                ldap3.BASE,
                attributes=[f"member;range={low}-{low + range_size - 1}"],
                controls=[extended_dn_control(hex_format=False)],
            )
        except (lx.LDAPException, OSError) as exc:
            raise translate(exc, session.url) from None
        entries = _entries(session.connection)
        current = _ranged_key(entries[0]["raw_attributes"]) if entries else None
    members = [m for m in (parse_member_value(v) for v in values) if m is not None]
    return [m for m in members if not m.is_foreign_security_principal]


def _bases(settings: LdapSettings, state: DcState) -> list[str]:
    return list(settings.base_dn) or [state.default_naming_context]


def _filter(settings: LdapSettings, *clauses: str) -> str:
    parts = [RECIPIENT_FILTER, *clauses]
    if settings.extra_filter:
        parts.append(settings.extra_filter)
    return "(&" + "".join(parts) + ")"


def _read_objects(
    session: LdapSession, settings: LdapSettings, bases: Iterable[str], search_filter: str
) -> Iterator[tuple[list[RecipientRecord], dict[str, list[MemberValue]]]]:
    attributes = [*RECIPIENT_ATTRIBUTES, f"member;range=0-{settings.range_size - 1}"]
    controls = [extended_dn_control(hex_format=False)]
    seen: set[str] = set()
    for base in bases:
        for entries in paged_search(
            session, base, search_filter, attributes, settings.page_size, controls
        ):
            records: list[RecipientRecord] = []
            members: dict[str, list[MemberValue]] = {}
            for entry in entries:
                dn = _split_dn(entry["dn"])
                record = to_record(dn, entry["raw_attributes"])
                if record is None or record.external_id in seen:
                    continue
                seen.add(record.external_id)
                records.append(record)
                if record.kind is RecipientKind.GROUP:
                    first = _ranged_key(entry["raw_attributes"])
                    members[record.external_id] = fetch_members(
                        session, dn, first, settings.range_size
                    )
            yield records, members


def iter_full(session: LdapSession, settings: LdapSettings) -> Iterator[LdapPage]:
    """Every recipient under the base DNs; the final page replaces all group member lists.

    The cursor is the USN read *before* the search, so changes made during the round are seen
    again by the next incremental round rather than lost.
    """
    state = read_dc_state(session)
    known: set[str] = set()
    members_by_group: dict[str, list[MemberValue]] = {}
    count = 0
    for records, members in _read_objects(
        session, settings, _bases(settings, state), _filter(settings)
    ):
        known.update(r.external_id for r in records)
        members_by_group.update(members)
        count += len(records)
        yield LdapPage(ChangeSet(upserts=records))
    member_sets = {
        group: [m.external_id for m in members if m.external_id in known]
        for group, members in members_by_group.items()
    }
    logger.info(
        "ldap full read done: dc=%s objects=%d groups=%d usn=%d",
        session.url,
        count,
        len(member_sets),
        state.highest_usn,
    )
    yield LdapPage(
        ChangeSet(member_sets=member_sets),
        final=True,
        cursor=LdapCursor(session.url, state.invocation_id, state.highest_usn),
        stats={"objects": count, "groups": len(member_sets)},
    )


def check_cursor(session: LdapSession, cursor: LdapCursor, state: DcState) -> None:
    if session.url != cursor.dc_url:
        raise LdapCursorInvalid(
            f"cursor belongs to {cursor.dc_url} but {session.url} answered: USNs are per DC"
        )
    if state.invocation_id != cursor.invocation_id:
        raise LdapCursorInvalid(
            f"invocationId of {session.url} changed ({cursor.invocation_id} -> "
            f"{state.invocation_id}): the DC was restored or rebuilt"
        )
    if state.highest_usn < cursor.highest_usn:
        raise LdapCursorInvalid(f"highestCommittedUSN of {session.url} went backwards")


def can_read_deleted_objects(session: LdapSession, naming_context: str) -> bool:
    """Whether tombstones are visible: AD and Samba hide them silently from plain accounts."""
    try:
        session.connection.search(
            f"CN=Deleted Objects,{naming_context}",
            "(objectClass=*)",
            ldap3.BASE,
            attributes=["objectGUID"],
            controls=[show_deleted_control(criticality=True)],
        )
    except (lx.LDAPNoSuchObjectResult, lx.LDAPInsufficientAccessRightsResult):
        return False
    except (lx.LDAPException, OSError) as exc:
        raise translate(exc, session.url) from None
    # Without Read Property the container still comes back, but with no attributes at all.
    return any(_first(e["raw_attributes"], "objectGUID") for e in _entries(session.connection))


def _deleted_ids(session: LdapSession, settings: LdapSettings, nc: str, usn: int) -> list[str]:
    search_filter = (
        "(&(isDeleted=TRUE)(|(objectClass=user)(objectClass=group)(objectClass=contact))"
        f"(uSNChanged>={usn + 1}))"
    )
    ids: list[str] = []
    for entries in paged_search(
        session,
        nc,
        search_filter,
        ["objectGUID", "isDeleted"],
        settings.page_size,
        [show_deleted_control(criticality=True)],
    ):
        for entry in entries:
            guid = _first(entry["raw_attributes"], "objectGUID")
            if guid:
                ids.append(guid_from_bytes(guid))
    return ids


def existing_ids(
    session: LdapSession, settings: LdapSettings, bases: Sequence[str], ids: Iterable[str]
) -> set[str]:
    """Which of `ids` are recipients under the bases (drops computers and out-of-scope members)."""
    pending = sorted(set(ids))
    found: set[str] = set()
    for start in range(0, len(pending), GUID_BATCH):
        batch = pending[start : start + GUID_BATCH]
        clause = (
            "(|"
            + "".join(f"(objectGUID={escape_bytes(uuid.UUID(i).bytes_le)})" for i in batch)
            + ")"
        )
        for base in bases:
            for entries in paged_search(
                session, base, _filter(settings, clause), ["objectGUID"], settings.page_size
            ):
                for entry in entries:
                    guid = _first(entry["raw_attributes"], "objectGUID")
                    if guid:
                        found.add(guid_from_bytes(guid))
    return found


def iter_incremental(
    session: LdapSession, settings: LdapSettings, cursor: LdapCursor
) -> Iterator[LdapPage]:
    """Objects with `uSNChanged` above the cursor, then tombstones; raises LdapCursorInvalid.

    Changed groups get their whole member list in `member_sets` (replacing what was stored).
    """
    state = read_dc_state(session)
    check_cursor(session, cursor, state)
    bases = _bases(settings, state)
    usn_clause = f"(uSNChanged>={cursor.highest_usn + 1})"
    batch_ids: set[str] = set()
    members_by_group: dict[str, list[MemberValue]] = {}
    count = 0
    for records, members in _read_objects(session, settings, bases, _filter(settings, usn_clause)):
        batch_ids.update(r.external_id for r in records)
        members_by_group.update(members)
        count += len(records)
        if records:
            yield LdapPage(ChangeSet(upserts=records))
    outside = {m.external_id for ms in members_by_group.values() for m in ms} - batch_ids
    valid = batch_ids | existing_ids(session, settings, bases, outside)
    member_sets = {
        group: [m.external_id for m in members if m.external_id in valid]
        for group, members in members_by_group.items()
    }
    visible = can_read_deleted_objects(session, state.default_naming_context)
    deletes: list[str] = []
    if visible:
        deletes = _deleted_ids(session, settings, state.default_naming_context, cursor.highest_usn)
    else:
        logger.warning(
            "ldap account cannot read CN=Deleted Objects: dc=%s; deletions need full rounds",
            session.url,
        )
    logger.info(
        "ldap incremental read done: dc=%s changed=%d deleted=%d usn=%d->%d",
        session.url,
        count,
        len(deletes),
        cursor.highest_usn,
        state.highest_usn,
    )
    yield LdapPage(
        ChangeSet(deletes=deletes, member_sets=member_sets),
        final=True,
        cursor=LdapCursor(session.url, state.invocation_id, state.highest_usn),
        deletions_visible=visible,
        stats={"changed": count, "deleted": len(deletes)},
    )


def full_round(settings: LdapSettings) -> Iterator[LdapPage]:
    """`iter_full` on its own connection to the first DC that answers, closed at the end."""
    with connect(settings) as session:
        yield from iter_full(session, settings)


def incremental_round(settings: LdapSettings, cursor: LdapCursor) -> Iterator[LdapPage]:
    """`iter_incremental` on the cursor's DC if it answers; another DC raises LdapCursorInvalid."""
    with connect(settings, prefer_url=cursor.dc_url) as session:
        yield from iter_incremental(session, settings, cursor)
