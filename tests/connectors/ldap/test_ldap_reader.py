"""Full and incremental reads against the real Samba DC seeded by conftest.py."""

from __future__ import annotations

import json
import uuid

import ldap3
import pytest
from pydantic import SecretStr

from app.connectors.base import RecipientKind, RecipientRecord
from app.connectors.ldap.client import LdapTemporaryError, connect
from app.connectors.ldap.reader import (
    LdapCursor,
    LdapCursorInvalid,
    LdapPage,
    full_round,
    incremental_round,
    iter_full,
    iter_incremental,
)

pytestmark = pytest.mark.samba


def _collect(pages: list[LdapPage]) -> tuple[dict[str, RecipientRecord], LdapPage]:
    records = {r.external_id: r for page in pages for r in page.changes.upserts}
    assert [p.final for p in pages].count(True) == 1
    assert pages[-1].final
    return records, pages[-1]


@pytest.fixture(scope="module")
def full_read(samba_dc):
    with connect(samba_dc.settings(page_size=200)) as session:
        pages = list(iter_full(session, samba_dc.settings(page_size=200)))
    return _collect(pages)


def test_full_read_pages_and_returns_a_cursor(samba_dc, full_read) -> None:
    records, final = full_read
    assert final.cursor is not None
    assert final.cursor.dc_url == "ldaps://localhost"
    assert final.cursor.highest_usn > 0
    uuid.UUID(final.cursor.invocation_id)
    assert LdapCursor.from_json(json.loads(json.dumps(final.cursor.to_json()))) == final.cursor
    # 4 users + 1 contact + 3 groups + the bulk users, nothing else under the OU.
    assert len(records) == 8 + samba_dc.bulk_users


def test_user_addresses_come_from_mail_and_smtp_proxy_addresses(samba_dc, full_read) -> None:
    records, _ = full_read
    alice = records[samba_dc.guids["alice"]]
    assert alice.kind is RecipientKind.USER
    assert alice.primary == "alice@example.test"
    assert alice.addresses == (
        "alice@example.test",
        "a.smith@example.test",
        "alice@alias.example.test",
    )
    assert alice.enabled
    assert alice.display_name == "Alice Smith"
    assert alice.attributes["department"] == "Sales"
    assert alice.attributes["title"] == "Manager"
    assert alice.attributes["company"] == "Example Ltd"
    assert alice.attributes["sam_account_name"] == "alice"
    assert alice.attributes["dn"] == f"CN=alice,{samba_dc.ou}"


def test_upn_is_not_an_address(samba_dc, full_read) -> None:
    bob = full_read[0][samba_dc.guids["bob"]]
    assert bob.addresses == ("bob@example.test",)
    assert bob.attributes["user_principal_name"] == "bob@corp.example.test"


def test_disabled_users_are_read_with_enabled_false(samba_dc, full_read) -> None:
    records, _ = full_read
    assert not records[samba_dc.guids["carol"]].enabled
    shared = records[samba_dc.guids["shared"]]
    assert not shared.enabled
    assert shared.addresses == ("shared@example.test", "info@example.test")


def test_contact_and_groups(samba_dc, full_read) -> None:
    records, _ = full_read
    partner = records[samba_dc.guids["partner"]]
    assert partner.kind is RecipientKind.CONTACT
    assert partner.addresses == ("partner@external.example",)
    sales = records[samba_dc.guids["sales"]]
    assert sales.kind is RecipientKind.GROUP
    assert sales.attributes["group_type"] == "distribution"
    assert set(sales.addresses) == {"sales@example.test", "vertrieb@example.test"}


def test_nested_cyclic_groups_without_foreign_principals(samba_dc, full_read) -> None:
    _, final = full_read
    g = samba_dc.guids
    sets = final.changes.member_sets
    assert sorted(sets[g["sales"]]) == sorted([g["alice"], g["team-a"], g["partner"]])
    assert sorted(sets[g["team-a"]]) == sorted([g["bob"], g["sales"]])


@pytest.mark.parametrize("range_size", [1500, 700])
def test_large_group_is_complete_through_explicit_ranges(samba_dc, range_size: int) -> None:
    settings = samba_dc.settings(range_size=range_size, base_dn=[samba_dc.ou])
    with connect(settings) as session:
        _, final = _collect(list(iter_full(session, settings)))
    members = final.changes.member_sets[samba_dc.guids["all-staff"]]
    assert len(members) == samba_dc.bulk_users
    assert set(members) == samba_dc.bulk_guids


def test_incremental_read_sees_adds_changes_and_deletions(samba_dc) -> None:
    settings = samba_dc.settings()
    with connect(settings) as session:
        _, final = _collect(list(iter_full(session, settings)))
    cursor = final.cursor
    assert cursor is not None

    admin = samba_dc.admin()
    new_dn, doomed_dn = f"CN=dave,{samba_dc.ou}", f"CN=erin,{samba_dc.ou}"
    admin.add(
        doomed_dn,
        ["top", "person", "organizationalPerson", "user"],
        {"sAMAccountName": "erin", "mail": "erin@example.test"},
    )
    doomed = samba_dc.guid_of(admin, doomed_dn)
    with connect(settings) as session:
        _, final = _collect(list(iter_incremental(session, settings, cursor)))
    cursor = final.cursor
    assert cursor is not None

    admin.add(
        new_dn,
        ["top", "person", "organizationalPerson", "user"],
        {"sAMAccountName": "dave", "mail": "dave@example.test"},
    )
    admin.modify(
        f"CN=bob,{samba_dc.ou}",
        {
            "proxyAddresses": [
                (ldap3.MODIFY_REPLACE, ["SMTP:bob@example.test", "smtp:robert@example.test"])
            ]
        },
    )
    admin.modify(f"CN=team-a,{samba_dc.ou}", {"member": [(ldap3.MODIFY_ADD, [new_dn])]})
    admin.delete(doomed_dn)
    admin.unbind()

    with connect(settings) as session:
        pages = list(iter_incremental(session, settings, cursor))
    records, final = _collect(pages)
    g = samba_dc.guids
    dave = next(r for r in records.values() if r.attributes.get("sam_account_name") == "dave")
    assert dave.addresses == ("dave@example.test",)
    assert records[g["bob"]].addresses == ("bob@example.test", "robert@example.test")
    assert g["alice"] not in records
    assert final.deletions_visible
    assert final.changes.deletes == [doomed]
    assert sorted(final.changes.member_sets[g["team-a"]]) == sorted(
        [g["bob"], g["sales"], dave.external_id]
    )
    assert final.cursor is not None
    assert final.cursor.highest_usn > cursor.highest_usn

    with connect(settings) as session:
        records, final = _collect(list(iter_incremental(session, settings, final.cursor)))
    assert records == {}
    assert final.changes.deletes == []


def test_cursor_from_another_dc_or_restored_dc_is_invalid(samba_dc) -> None:
    settings = samba_dc.settings()
    with connect(settings) as session:
        _, final = _collect(list(iter_full(session, settings)))
        cursor = final.cursor
        assert cursor is not None
        restored = LdapCursor(cursor.dc_url, str(uuid.uuid4()), cursor.highest_usn)
        with pytest.raises(LdapCursorInvalid, match="invocationId"):
            next(iter_incremental(session, settings, restored))
        elsewhere = LdapCursor("ldaps://dc2.example.test", cursor.invocation_id, 1)
        with pytest.raises(LdapCursorInvalid, match="per DC"):
            next(iter_incremental(session, settings, elsewhere))


def test_account_without_rights_on_deleted_objects_is_reported(samba_dc) -> None:
    settings = samba_dc.settings(
        bind_dn="alice@example.test", bind_password=SecretStr(samba_dc.user_password)
    )
    with connect(settings) as session:
        _, final = _collect(list(iter_full(session, settings)))
        assert final.cursor is not None
        _, final = _collect(list(iter_incremental(session, settings, final.cursor)))
    assert not final.deletions_visible
    assert final.changes.deletes == []


def test_round_helpers_open_and_close_their_own_session(samba_dc) -> None:
    settings = samba_dc.settings()
    _, final = _collect(list(full_round(settings)))
    assert final.cursor is not None
    _, final = _collect(list(incremental_round(settings, final.cursor)))
    assert final.cursor is not None


def test_dc_going_down_mid_round_is_a_temporary_error(samba_dc) -> None:
    """Runs last in this module: it stops and restarts the session's DC."""
    settings = samba_dc.settings(page_size=100)
    pages = full_round(settings)
    first = next(pages)
    assert first.changes.upserts
    samba_dc.stop()
    try:
        with pytest.raises(LdapTemporaryError):
            for _ in pages:
                pass
        with pytest.raises(LdapTemporaryError, match="no DC reachable"):
            next(full_round(settings))
    finally:
        pages.close()
        samba_dc.start()
    assert _collect(list(full_round(settings)))[1].cursor is not None
