"""Entry -> record mapping, without a DC."""

from __future__ import annotations

import uuid

from app.connectors.base import RecipientKind
from app.connectors.ldap.mapping import parse_member_value, smtp_addresses, to_record

GUID = uuid.UUID("0b5c0a52-4cf0-4a59-9c25-3f3c2f2a1e10")


def _entry(**attrs: list[str]) -> dict[str, list[bytes]]:
    raw = {key: [v.encode() for v in values] for key, values in attrs.items()}
    raw["objectGUID"] = [GUID.bytes_le]
    return raw


def test_primary_is_the_upper_case_smtp_entry() -> None:
    addresses, primary = smtp_addresses(
        "a@example.test", ["smtp:b@example.test", "SMTP:c@example.test", "X500:/o=x", "sip:a@x"]
    )
    assert primary == "c@example.test"
    assert addresses == ("c@example.test", "a@example.test", "b@example.test")


def test_mail_is_primary_without_proxy_addresses() -> None:
    assert smtp_addresses("a@example.test", []) == (("a@example.test",), "a@example.test")
    assert smtp_addresses(None, []) == ((), None)


def test_exchange_recipient_types_map_to_mailbox_kinds() -> None:
    for value, kind in (
        ("4", RecipientKind.SHARED_MAILBOX),
        ("16", RecipientKind.ROOM),
        ("32", RecipientKind.EQUIPMENT),
        ("34359738368", RecipientKind.SHARED_MAILBOX),
        ("1", RecipientKind.USER),
    ):
        record = to_record(
            "CN=x,DC=example,DC=test",
            _entry(
                objectClass=["top", "person", "user"],
                msExchRecipientTypeDetails=[value],
                userAccountControl=["514"],
                mail=["x@example.test"],
            ),
        )
        assert record is not None
        assert record.kind is kind
        assert record.external_id == str(GUID)
        assert not record.enabled


def test_computers_are_not_recipients() -> None:
    entry = _entry(objectClass=["top", "person", "user", "computer"])
    assert to_record("CN=pc,DC=example,DC=test", entry) is None


def test_extended_dn_member_values() -> None:
    value = f"<GUID={GUID}>;<SID=S-1-5-11>;CN=S-1-5-11,CN=ForeignSecurityPrincipals,DC=x"
    member = parse_member_value(value.encode())
    assert member is not None
    assert member.external_id == str(GUID)
    assert member.is_foreign_security_principal
    assert parse_member_value(b"CN=plain,DC=x") is None
