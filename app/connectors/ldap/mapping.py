"""Active Directory entries -> `RecipientRecord`s.

Pure functions over ldap3's raw attribute dicts (bytes values), so they are testable without a DC.
Address rules are docs/contracts.md §3: `mail` plus every `smtp:` entry of `proxyAddresses`, the
upper-case `SMTP:` one is primary; `X500:`, `SIP:`, ... and `userPrincipalName` are not addresses.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.connectors.base import RecipientKind, RecipientRecord

# userAccountControl ACCOUNTDISABLE.
# Ref: https://learn.microsoft.com/troubleshoot/windows-server/active-directory/useraccountcontrol-manipulate-account-properties
UAC_ACCOUNTDISABLE = 0x2
# groupType: bit 0x80000000 set = security group, clear = distribution group.
GROUP_TYPE_SECURITY = 0x80000000

# msExchRecipientTypeDetails (Exchange schema; absent on Samba). On-premises values and the
# "Remote*" values of hybrid mailboxes that live in Exchange Online.
RECIPIENT_TYPE_KINDS: Mapping[int, RecipientKind] = {
    4: RecipientKind.SHARED_MAILBOX,  # SharedMailbox
    16: RecipientKind.ROOM,  # RoomMailbox
    32: RecipientKind.EQUIPMENT,  # EquipmentMailbox
    8589934592: RecipientKind.ROOM,  # RemoteRoomMailbox
    17179869184: RecipientKind.EQUIPMENT,  # RemoteEquipmentMailbox
    34359738368: RecipientKind.SHARED_MAILBOX,  # RemoteSharedMailbox
}

# Attributes every read asks for; member is fetched separately with explicit ranges.
RECIPIENT_ATTRIBUTES: tuple[str, ...] = (
    "objectGUID",
    "objectClass",
    "sAMAccountName",
    "userPrincipalName",
    "mail",
    "proxyAddresses",
    "displayName",
    "givenName",
    "sn",
    "department",
    "title",
    "company",
    "userAccountControl",
    "groupType",
    "msExchRecipientTypeDetails",
    "uSNChanged",
    "isDeleted",
)

# Users (not computers: their objectCategory is computer), contacts (objectCategory person) and
# groups. The user half also matches inetOrgPerson.
RECIPIENT_FILTER = "(|(objectCategory=person)(objectClass=group))"

_EXTENDED_DN = re.compile(r"^<GUID=([0-9A-Fa-f-]{32,36})>;(?:<SID=[^>]*>;)?(.*)$", re.DOTALL)

RawAttributes = Mapping[str, Sequence[bytes]]


@dataclass(frozen=True, slots=True)
class MemberValue:
    """One value of `member` as returned with the extended DN control."""

    external_id: str
    dn: str

    @property
    def is_foreign_security_principal(self) -> bool:
        # Members from trusted domains appear as FSP objects; they are no recipients here.
        return ",cn=foreignsecurityprincipals," in self.dn.lower()


def guid_from_bytes(raw: bytes) -> str:
    """objectGUID is 16 little-endian bytes; the canonical string is what AD tools show."""
    return str(uuid.UUID(bytes_le=raw))


def lower_keys(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {key.lower(): value for key, value in raw.items()}


def _text(values: Sequence[bytes] | None) -> str | None:
    if not values:
        return None
    return values[0].decode("utf-8", "replace")


def _texts(values: Sequence[bytes] | None) -> list[str]:
    return [value.decode("utf-8", "replace") for value in values or ()]


def _int(values: Sequence[bytes] | None) -> int | None:
    text = _text(values)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def parse_member_value(value: bytes | str) -> MemberValue | None:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    match = _EXTENDED_DN.match(text)
    if match is None:
        return None
    return MemberValue(external_id=str(uuid.UUID(match.group(1))), dn=match.group(2))


def smtp_addresses(
    mail: str | None, proxy_addresses: Iterable[str]
) -> tuple[tuple[str, ...], str | None]:
    """Addresses in a stable order (primary first) and the primary, or None if there is none."""
    primary: str | None = None
    others: list[str] = []
    for value in proxy_addresses:
        prefix, sep, address = value.partition(":")
        if not sep or prefix.lower() != "smtp" or not address.strip():
            continue
        if prefix == "SMTP" and primary is None:
            primary = address.strip()
        else:
            others.append(address.strip())
    if mail and mail.strip():
        others.insert(0, mail.strip())
        if primary is None:
            primary = mail.strip()
    ordered: list[str] = []
    seen: set[str] = set()
    for address in [primary, *others] if primary else others:
        if address and address.lower() not in seen:
            seen.add(address.lower())
            ordered.append(address)
    return tuple(ordered), primary


def recipient_kind(
    object_classes: Iterable[str], recipient_type: int | None
) -> RecipientKind | None:
    classes = {value.lower() for value in object_classes}
    if "group" in classes:
        return RecipientKind.GROUP
    if "contact" in classes:
        return RecipientKind.CONTACT
    if "user" in classes and "computer" not in classes:
        if recipient_type is not None and recipient_type in RECIPIENT_TYPE_KINDS:
            return RECIPIENT_TYPE_KINDS[recipient_type]
        return RecipientKind.USER
    return None


def to_record(dn: str, raw: RawAttributes) -> RecipientRecord | None:
    """Map one entry; None for objects that are not recipients of any kind (computers, FSPs)."""
    attrs = lower_keys(raw)
    guid_values = attrs.get("objectguid")
    if not guid_values:
        return None
    recipient_type = _int(attrs.get("msexchrecipienttypedetails"))
    kind = recipient_kind(_texts(attrs.get("objectclass")), recipient_type)
    if kind is None:
        return None
    uac = _int(attrs.get("useraccountcontrol"))
    group_type = _int(attrs.get("grouptype"))
    addresses, primary = smtp_addresses(
        _text(attrs.get("mail")), _texts(attrs.get("proxyaddresses"))
    )
    attributes: dict[str, Any] = {"dn": dn}
    for key, name in (
        ("samaccountname", "sam_account_name"),
        ("userprincipalname", "user_principal_name"),
        ("givenname", "given_name"),
        ("sn", "surname"),
        ("department", "department"),
        ("title", "title"),
        ("company", "company"),
    ):
        value = _text(attrs.get(key))
        if value is not None:
            attributes[name] = value
    if uac is not None:
        attributes["user_account_control"] = uac
    if recipient_type is not None:
        attributes["recipient_type_details"] = recipient_type
    if group_type is not None:
        attributes["group_type"] = (
            "security" if group_type & GROUP_TYPE_SECURITY else "distribution"
        )
    return RecipientRecord(
        external_id=guid_from_bytes(guid_values[0]),
        kind=kind,
        addresses=addresses,
        primary=primary,
        display_name=_text(attrs.get("displayname")),
        enabled=not (uac is not None and uac & UAC_ACCOUNTDISABLE),
        attributes=attributes,
    )
