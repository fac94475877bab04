"""Pure functions from Graph delta JSON to the mirror's records and change sets.

Address rules (Microsoft Learn "user resource type" https://learn.microsoft.com/graph/api/resources/user,
"orgContact resource type", "Working with groups in Microsoft Graph"
https://learn.microsoft.com/graph/api/resources/groups-overview): `mail` plus every `SMTP:`/`smtp:`
entry of `proxyAddresses`, upper-case `SMTP:` being the primary; `X500:`, `SIP:`, `SPO:`, `EUM:`,
`X400:` are not SMTP addresses; `otherMails` and a bare `userPrincipalName` are not addresses.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.connectors.base import ChangeSet, MemberRef, RecipientKind, RecipientRecord

# members@delta types kept (the issue: user, group and orgContact; devices etc. are ignored).
MEMBER_TYPES = frozenset({"#microsoft.graph.user", "#microsoft.graph.group",
                          "#microsoft.graph.orgcontact"})  # fmt: skip
# mailboxSettings.userPurpose, when a caller fetched it per user (it is not in delta).
USER_PURPOSE_KINDS = {
    "shared": RecipientKind.SHARED_MAILBOX,
    "room": RecipientKind.ROOM,
    "equipment": RecipientKind.EQUIPMENT,
}
USER_ATTRIBUTES = (
    "userPrincipalName", "userType", "givenName", "surname", "department", "jobTitle",
    "companyName", "officeLocation", "mailNickname",
)  # fmt: skip
GROUP_ATTRIBUTES = ("mailNickname", "mailEnabled", "securityEnabled", "groupTypes")
CONTACT_ATTRIBUTES = ("companyName", "mailNickname", "givenName", "surname")
_EXACT_MEMBER_TYPES = frozenset({"#microsoft.graph.user", "#microsoft.graph.group",
                                 "#microsoft.graph.orgContact"})  # fmt: skip
_MEMBERSHIP_ONLY_KEYS = frozenset({"id", "@odata.type", "members@delta"})


@dataclass(slots=True)
class MappedPage:
    changes: ChangeSet
    skipped: int = 0  # objects without an id (counted, never applied)
    soft_deleted: list[str] = field(default_factory=list)  # ids removed with reason "changed"


def accepted_domains(domains: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """Domains mail can be delivered to: isVerified and 'Email' in supportedServices.

    Microsoft Learn "domain resource type" (https://learn.microsoft.com/graph/api/resources/domain).
    `*.onmicrosoft.com` domains count exactly when Graph lists them as verified Email domains.
    """
    return frozenset(
        str(d["id"]).lower()
        for d in domains
        if d.get("id")
        and d.get("isVerified") is True
        and "Email" in (d.get("supportedServices") or [])
    )


def smtp_addresses(obj: Mapping[str, Any]) -> tuple[list[str], str | None]:
    """`mail` and the SMTP proxies, de-duplicated case-insensitively, primary first."""
    primary: str | None = None
    found: list[str] = []
    for proxy in obj.get("proxyAddresses") or []:
        if not isinstance(proxy, str) or proxy[:5].lower() != "smtp:" or "@" not in proxy:
            continue  # X500:, SIP:, SPO:, EUM:, X400: are not SMTP addresses
        address = proxy[5:].strip()
        if proxy.startswith("SMTP:") and primary is None:
            primary = address
        found.append(address)
    mail = obj.get("mail")
    if isinstance(mail, str) and "@" in mail:
        found.append(mail.strip())
        primary = primary or mail.strip()  # `mail` is the primary SMTP address
    ordered = ([primary] if primary else []) + found
    seen: set[str] = set()
    unique = []
    for address in ordered:
        if address.lower() not in seen:
            seen.add(address.lower())
            unique.append(address)
    return unique, primary


def _filter(addresses: list[str], primary: str | None,
            accepted: frozenset[str] | None) -> tuple[tuple[str, ...], str | None]:  # fmt: skip
    kept = tuple(
        a for a in addresses
        if "#ext#" not in a.lower()  # a guest's UPN form is never deliverable
        and (accepted is None or a.rpartition("@")[2].lower() in accepted)
    )  # fmt: skip
    if primary is not None and primary.lower() not in {a.lower() for a in kept}:
        primary = None
    return kept, primary


def _attributes(obj: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    return {name: obj[name] for name in names if obj.get(name) is not None}


def map_user(obj: Mapping[str, Any], accepted: frozenset[str] | None = None) -> RecipientRecord:
    """A disabled account is still a recipient (shared mailboxes are disabled users); it is
    only called a shared/room/equipment mailbox when `mailboxSettings.userPurpose` says so."""
    addresses, primary = _filter(*smtp_addresses(obj), accepted)
    purpose = (obj.get("mailboxSettings") or {}).get("userPurpose")
    kind = USER_PURPOSE_KINDS.get(str(purpose).lower(), RecipientKind.USER)
    return RecipientRecord(
        external_id=str(obj["id"]),
        kind=kind,
        addresses=addresses,
        primary=primary,
        display_name=obj.get("displayName"),
        enabled=obj.get("accountEnabled") is not False,
        attributes=_attributes(obj, USER_ATTRIBUTES),
    )


def group_kind(obj: Mapping[str, Any]) -> str:
    """microsoft365, distribution, mail_enabled_security or security (groups overview table)."""
    if "Unified" in (obj.get("groupTypes") or []):
        return "microsoft365"
    if obj.get("mailEnabled"):
        return "mail_enabled_security" if obj.get("securityEnabled") else "distribution"
    return "security"


def map_group(obj: Mapping[str, Any], accepted: frozenset[str] | None = None) -> RecipientRecord:
    """A security group without mail is kept (for nesting) but has no addresses."""
    if obj.get("mailEnabled") is False:
        addresses: tuple[str, ...] = ()
        primary = None
    else:
        addresses, primary = _filter(*smtp_addresses(obj), accepted)
    attributes = _attributes(obj, GROUP_ATTRIBUTES)
    attributes["groupKind"] = group_kind(obj)
    if "DynamicMembership" in (obj.get("groupTypes") or []):
        attributes["dynamicMembership"] = True
    return RecipientRecord(
        external_id=str(obj["id"]),
        kind=RecipientKind.GROUP,
        addresses=addresses,
        primary=primary,
        display_name=obj.get("displayName"),
        attributes=attributes,
    )


def map_contact(obj: Mapping[str, Any], accepted: frozenset[str] | None = None) -> RecipientRecord:
    addresses, primary = _filter(*smtp_addresses(obj), accepted)
    return RecipientRecord(
        external_id=str(obj["id"]),
        kind=RecipientKind.CONTACT,
        addresses=addresses,
        primary=primary,
        display_name=obj.get("displayName"),
        attributes=_attributes(obj, CONTACT_ATTRIBUTES),
    )


MAPPERS = {"users": map_user, "groups": map_group, "contacts": map_contact}


def member_changes(
    group_id: str, members_delta: Iterable[Any]
) -> tuple[list[MemberRef], list[MemberRef]]:
    """members@delta items: `@removed` = membership removed or member deleted.

    Microsoft Learn "Get incremental changes to groups"
    (https://learn.microsoft.com/graph/delta-query-groups). A large group's list is split over
    pages, so these are changes to apply one by one, never the whole membership.
    """
    adds: list[MemberRef] = []
    removes: list[MemberRef] = []
    for member_id, added in _member_items(members_delta):
        (adds if added else removes).append(MemberRef(group_id, member_id))
    return adds, removes


def _member_wanted(item: Any) -> bool:
    return next(iter(_member_items((item,))), None) is not None


def _member_items(members_delta: Iterable[Any]) -> Iterator[tuple[str, bool]]:
    for item in members_delta:
        if not isinstance(item, dict) or not item.get("id"):
            continue
        odata_type = item.get("@odata.type")
        if odata_type is not None and odata_type.lower() not in MEMBER_TYPES:
            continue  # devices, service principals: not mail recipients
        yield str(item["id"]), "@removed" not in item


def map_page(
    resource: str,
    objects: Iterable[Mapping[str, Any]],
    *,
    accepted: frozenset[str] | None = None,
) -> MappedPage:
    """One delta page -> one ChangeSet; a replayed object counts once, the last copy wins."""
    mapper = MAPPERS[resource]
    records: dict[str, RecipientRecord | None] = {}  # None = removed
    soft: dict[str, bool] = {}
    members: dict[tuple[str, str], bool] = {}  # (group, member) -> True = add
    skipped = 0
    for obj in objects:
        obj_id = obj.get("id")
        if not obj_id or not isinstance(obj_id, str):
            skipped += 1
            continue
        removed = obj.get("@removed")
        if removed is not None:
            records[obj_id] = None
            soft[obj_id] = isinstance(removed, Mapping) and removed.get("reason") == "changed"
            continue
        if resource == "groups" and "members@delta" in obj:
            for item in obj.get("members@delta") or ():  # hot loop: ~1M items in a full round
                odata_type = item.get("@odata.type") if isinstance(item, dict) else None
                if odata_type not in _EXACT_MEMBER_TYPES and not _member_wanted(item):
                    continue
                if member_id := item.get("id"):
                    members[obj_id, str(member_id)] = "@removed" not in item
        if not set(obj) <= _MEMBERSHIP_ONLY_KEYS:  # a bare membership slice carries no properties
            records[obj_id] = mapper(obj, accepted)
    changes = ChangeSet(
        upserts=[r for r in records.values() if r is not None],
        deletes=[i for i, r in records.items() if r is None],
        member_adds=[MemberRef(g, m) for (g, m), added in members.items() if added],
        member_removes=[MemberRef(g, m) for (g, m), added in members.items() if not added],
    )
    return MappedPage(changes, skipped, [i for i in changes.deletes if soft.get(i)])
