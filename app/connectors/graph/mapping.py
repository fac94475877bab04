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

from app.connectors.base import ChangeSet, Edges, RecipientKind, RecipientRecord
from app.directory.addresses import normalize_domain
from app.errors import Malformed

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
    Names are keys (`normalize_domain`), as stored and as looked up; one that is not a domain
    name is left out (its addresses are then not in an accepted domain).
    """
    return frozenset(
        name
        for d in domains
        if d.get("id")
        and d.get("isVerified") is True
        and "Email" in (d.get("supportedServices") or [])
        and (name := _domain_key(str(d["id"]))) is not None
    )


def _domain_key(domain: str) -> str | None:
    try:
        return normalize_domain(domain)
    except Malformed:
        return None


def smtp_addresses(obj: Mapping[str, Any]) -> tuple[list[str], str | None]:
    """`mail` and the SMTP proxies, de-duplicated case-insensitively, primary first."""
    primary: str | None = None
    found: list[str] = []
    for proxy in obj.get("proxyAddresses") or ():
        if not isinstance(proxy, str) or proxy[:5].lower() != "smtp:" or "@" not in proxy:
            continue  # X500:, SIP:, SPO:, EUM:, X400: are not SMTP addresses
        address = proxy[5:].strip()
        if primary is None and proxy.startswith("SMTP:"):
            primary = address
        found.append(address)
    mail = obj.get("mail")
    if isinstance(mail, str) and "@" in mail:
        mail = mail.strip()
        found.append(mail)
        primary = primary or mail  # `mail` is the primary SMTP address
    unique: dict[str, str] = {}  # lower-cased -> first spelling seen
    if primary:
        unique[primary.lower()] = primary
    for address in found:
        unique.setdefault(address.lower(), address)
    return list(unique.values()), primary


def _filter(addresses: list[str], primary: str | None,
            accepted: frozenset[str] | None) -> tuple[tuple[str, ...], str | None]:  # fmt: skip
    wanted = primary.lower() if primary is not None else None
    kept = []
    has_primary = False
    for address in addresses:
        lowered = address.lower()
        if "#ext#" in lowered:
            continue  # a guest's UPN form is never deliverable
        if accepted is not None:
            # lower() is the key for plain ASCII domains; anything else is normalized to match.
            domain = address.rpartition("@")[2]
            if domain.lower() not in accepted and _domain_key(domain) not in accepted:
                continue
        kept.append(address)
        has_primary = has_primary or lowered == wanted
    return tuple(kept), primary if has_primary else None


def _attributes(obj: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    return {name: value for name in names if (value := obj.get(name)) is not None}


def map_user(obj: Mapping[str, Any], accepted: frozenset[str] | None = None) -> RecipientRecord:
    """A disabled account is still a recipient (shared mailboxes are disabled users); it is
    only called a shared/room/equipment mailbox when `mailboxSettings.userPurpose` says so."""
    addresses, primary = _filter(*smtp_addresses(obj), accepted)
    kind = RecipientKind.USER
    if settings := obj.get("mailboxSettings"):
        purpose = settings.get("userPurpose")
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


def _member_items(members_delta: Iterable[Any]) -> Iterator[tuple[str, bool]]:
    """members@delta items: `@removed` = membership removed or member deleted.

    Microsoft Learn "Get incremental changes to groups"
    (https://learn.microsoft.com/graph/delta-query-groups). A large group's list is split over
    pages, so these are changes to apply one by one, never the whole membership.
    """
    for item in members_delta:
        if not isinstance(item, dict) or not item.get("id"):
            continue
        odata_type = item.get("@odata.type")
        if odata_type is not None and str(odata_type).lower() not in MEMBER_TYPES:
            continue  # devices, service principals: not mail recipients
        yield str(item["id"]), "@removed" not in item


def _member_slice(members_delta: list[Any]) -> dict[str, bool]:
    """member id -> True = added, False = removed; a repeated member: the last item wins.

    The hot path of a full round (~10 items per user): one comprehension covers the common
    slice, where every item is a user, group or contact with a string id, and any other slice
    (devices, other spellings of the type, repeats, malformed items) takes `_member_items`.
    """
    try:
        changes = {
            item["id"]: "@removed" not in item
            for item in members_delta
            if item["@odata.type"] in _EXACT_MEMBER_TYPES
        }
    except (KeyError, TypeError):
        changes = None
    if changes is None or len(changes) != len(members_delta) or set(map(type, changes)) != {str}:
        return dict(_member_items(members_delta))
    changes.pop("", None)
    return changes


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
    members: dict[str, dict[str, bool]] = {}  # group -> member -> True = add
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
        if resource == "groups":
            members_delta = obj.get("members@delta")
            if isinstance(members_delta, list) and members_delta:
                changes = _member_slice(members_delta)
                if obj_id in members:  # the group came back on this page with another slice
                    members[obj_id].update(changes)
                else:
                    members[obj_id] = changes
        if not obj.keys() <= _MEMBERSHIP_ONLY_KEYS:  # a bare membership slice has no properties
            records[obj_id] = mapper(obj, accepted)
    adds: Edges = {}
    removes: Edges = {}
    for group_id, changes in members.items():
        added = [m for m, is_added in changes.items() if is_added]
        if added:
            adds[group_id] = added
        if len(added) < len(changes):
            removes[group_id] = [m for m, is_added in changes.items() if not is_added]
    return MappedPage(
        ChangeSet(
            upserts=[r for r in records.values() if r is not None],
            deletes=[i for i, r in records.items() if r is None],
            member_adds=adds,
            member_removes=removes,
        ),
        skipped,
        [i for i, r in records.items() if r is None and soft[i]],
    )
