"""Helpers for sync tests: a private OU per test, and what the mirror must look like.

`expected_directory` reads the DC independently of the connector (plain ldap3 as Administrator,
no extended DN, no explicit ranges) and states the mirror the connector should produce;
`mirror_snapshot` reads the same shape back from the database.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import ldap3
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.directory.models import Address, Membership, Recipient
from tests.connectors.ldap.samba import BASE_DN, DISTRIBUTION_GLOBAL, USER_CLASSES, SambaDC

TREE_DELETE_OID = "1.2.840.113556.1.4.805"
RECIPIENT_FILTER = "(|(objectCategory=person)(objectClass=group))"


@dataclass(frozen=True)
class Mirror:
    """Per objectGUID: (kind, enabled, addresses); per group GUID: direct member GUIDs."""

    objects: dict[str, tuple[str, bool, frozenset[str]]]
    members: dict[str, frozenset[str]]

    @property
    def addresses(self) -> set[str]:
        return {a for _, _, addresses in self.objects.values() for a in addresses}


def _addresses(attrs: dict[str, Any]) -> frozenset[str]:
    found = {str(m).lower() for m in attrs.get("mail") or []}
    for value in attrs.get("proxyAddresses") or []:
        prefix, _, address = str(value).partition(":")
        if prefix.lower() == "smtp" and address:
            found.add(address.lower())
    return frozenset(found)


def _decoded(raw: dict[str, list[bytes]]) -> dict[str, list[str]]:
    """Attribute values as text; member;range=... keys would mean ldap3 did not follow ranges."""
    return {key: [v.decode() for v in values] for key, values in raw.items() if key != "objectGUID"}


def _kind(classes: Iterable[str]) -> str:
    lowered = {c.lower() for c in classes}
    if "group" in lowered:
        return "group"
    return "contact" if "contact" in lowered else "user"


def expected_directory(dc: SambaDC, base: str) -> Mirror:
    conn = dc.admin()
    try:
        entries = conn.extend.standard.paged_search(
            base,
            RECIPIENT_FILTER,
            attributes=[
                "objectGUID",
                "objectClass",
                "mail",
                "proxyAddresses",
                "userAccountControl",
                "member",
            ],
            paged_size=500,
            generator=False,
        )
        entries = [e for e in entries if e["type"] == "searchResEntry"]
    finally:
        conn.unbind()
    guid_by_dn: dict[str, str] = {}
    objects: dict[str, tuple[str, bool, frozenset[str]]] = {}
    for entry in entries:
        guid = str(uuid.UUID(bytes_le=entry["raw_attributes"]["objectGUID"][0]))
        guid_by_dn[entry["dn"].lower()] = guid
        attrs = _decoded(entry["raw_attributes"])
        uac = int((attrs.get("userAccountControl") or ["0"])[0])
        objects[guid] = (_kind(attrs["objectClass"]), not (uac & 2), _addresses(attrs))
    members = {}
    for entry in entries:
        guid = guid_by_dn[entry["dn"].lower()]
        if objects[guid][0] == "group":
            dns = _decoded(entry["raw_attributes"]).get("member") or []
            members[guid] = frozenset(guid_by_dn[d.lower()] for d in dns if d.lower() in guid_by_dn)
    return Mirror(objects, members)


async def mirror_snapshot(
    sessionmaker: async_sessionmaker[AsyncSession], connector_id: str
) -> Mirror:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(Recipient.id, Recipient.external_id, Recipient.kind, Recipient.enabled).where(
                Recipient.connector_id == connector_id, Recipient.deleted_at.is_(None)
            )
        )
        by_id = {rid: (ext, kind, enabled) for rid, ext, kind, enabled in rows}
        addresses: dict[str, set[str]] = {rid: set() for rid in by_id}
        for rid, address in await session.execute(
            select(Address.recipient_id, Address.address).where(
                Address.recipient_id.in_(list(by_id))
            )
        ):
            addresses[rid].add(address)
        members: dict[str, set[str]] = {
            ext: set() for ext, kind, _ in by_id.values() if kind == "group"
        }
        for gid, member in await session.execute(
            select(Membership.group_id, Membership.member_external_id).where(
                Membership.group_id.in_(list(by_id))
            )
        ):
            members[by_id[gid][0]].add(member)
    # Edges to deleted members are not part of the mirror's answer (groups.members joins live
    # recipients): AD does not bump a group's uSNChanged when a member is deleted, so an
    # incremental round cannot rewrite that group; the next full round does.
    live = {ext for ext, _, _ in by_id.values()}
    members = {group: {m for m in found if m in live} for group, found in members.items()}
    return Mirror(
        {
            ext: (kind, enabled, frozenset(addresses[rid]))
            for rid, (ext, kind, enabled) in by_id.items()
        },
        {group: frozenset(m) for group, m in members.items()},
    )


def _password(value: str) -> bytes:
    return f'"{value}"'.encode("utf-16-le")


@dataclass
class TestOU:
    """A private OU directly under the domain, so tests never see each other's objects."""

    dc: SambaDC
    conn: ldap3.Connection
    dn: str
    prefix: str
    guids: dict[str, str] = field(default_factory=dict)
    dns: dict[str, str] = field(default_factory=dict)

    __test__ = False  # not a pytest test class

    def _put(self, name: str, dn: str) -> str:
        self.dns[name] = dn
        self.guids[name] = self.dc.guid_of(self.conn, dn)
        return self.guids[name]

    def mail(self, name: str, domain: str = "example.test") -> str:
        return f"{self.prefix}-{name}@{domain}"

    def add_user(
        self,
        name: str,
        *,
        aliases: Iterable[str] = (),
        disabled: bool = False,
        password: str | None = None,
        mail: bool = True,
    ) -> str:
        dn = f"CN={name},{self.dn}"
        attrs: dict[str, Any] = {
            "sAMAccountName": f"{self.prefix}{name}"[:20],
            "userPrincipalName": f"{self.prefix}{name}@example.test",
            "displayName": name.title(),
        }
        if mail:
            attrs["mail"] = self.mail(name)
            attrs["proxyAddresses"] = [f"SMTP:{self.mail(name)}"] + [f"smtp:{a}" for a in aliases]
        if password:
            attrs["unicodePwd"] = _password(password)
            attrs["userAccountControl"] = "514" if disabled else "512"
        elif disabled:
            attrs["userAccountControl"] = "514"
        self.conn.add(dn, USER_CLASSES, attrs)
        return self._put(name, dn)

    def add_contact(self, name: str, address: str) -> str:
        dn = f"CN={name},{self.dn}"
        self.conn.add(
            dn,
            ["top", "person", "organizationalPerson", "contact"],
            {"mail": address, "proxyAddresses": [f"SMTP:{address}"], "displayName": name},
        )
        return self._put(name, dn)

    def add_group(self, name: str, members: Iterable[str] = ()) -> str:
        dn = f"CN={name},{self.dn}"
        self.conn.add(
            dn,
            ["top", "group"],
            {
                "sAMAccountName": f"{self.prefix}{name}"[:20],
                "groupType": DISTRIBUTION_GLOBAL,
                "mail": self.mail(name),
                "proxyAddresses": [f"SMTP:{self.mail(name)}"],
            },
        )
        guid = self._put(name, dn)
        if members:
            self.add_members(name, *members)
        return guid

    def add_members(self, group: str, *names: str) -> None:
        self.conn.modify(
            self.dns[group], {"member": [(ldap3.MODIFY_ADD, [self.dns[n] for n in names])]}
        )

    def remove_members(self, group: str, *names: str) -> None:
        self.conn.modify(
            self.dns[group], {"member": [(ldap3.MODIFY_DELETE, [self.dns[n] for n in names])]}
        )

    def set_aliases(self, name: str, *aliases: str) -> None:
        values = [f"SMTP:{self.mail(name)}"] + [f"smtp:{a}" for a in aliases]
        self.conn.modify(self.dns[name], {"proxyAddresses": [(ldap3.MODIFY_REPLACE, values)]})

    def disable(self, name: str) -> None:
        self.conn.modify(self.dns[name], {"userAccountControl": [(ldap3.MODIFY_REPLACE, ["514"])]})

    def delete(self, name: str) -> None:
        self.conn.delete(self.dns.pop(name))

    def remove(self) -> None:
        with contextlib.suppress(ldap3.core.exceptions.LDAPException):
            self.conn.delete(self.dn, controls=[(TREE_DELETE_OID, True, None)])
        with contextlib.suppress(ldap3.core.exceptions.LDAPException):
            self.conn.unbind()


def make_ou(dc: SambaDC) -> TestOU:
    prefix = "t" + uuid.uuid4().hex[:6]
    conn = dc.admin()
    dn = f"OU={prefix},{BASE_DN}"
    conn.add(dn, "organizationalUnit")
    return TestOU(dc, conn, dn, prefix)
