"""Graph JSON -> RecipientRecord / ChangeSet: docs/contracts.md §3 (addresses)."""

from __future__ import annotations

from app.connectors.base import RecipientKind
from app.connectors.graph.mapping import (
    accepted_domains,
    map_contact,
    map_group,
    map_page,
    map_user,
)

DOMAINS = [
    {
        "id": "contoso.com",
        "isVerified": True,
        "supportedServices": ["Email", "OfficeCommunicationsOnline"],
    },
    {"id": "contoso.onmicrosoft.com", "isVerified": True, "supportedServices": ["Email"]},
    {"id": "legacy.org", "isVerified": False, "supportedServices": ["Email"]},
    {"id": "sso.contoso.com", "isVerified": True, "supportedServices": ["OrgIdAuthentication"]},
]
ACCEPTED = accepted_domains(DOMAINS)


def test_only_verified_email_domains_are_accepted() -> None:
    assert frozenset({"contoso.com", "contoso.onmicrosoft.com"}) == ACCEPTED


def test_user_addresses_come_from_mail_and_smtp_proxies_with_upper_case_primary() -> None:
    record = map_user(
        {
            "id": "u1",
            "mail": "Alice.Smith@Contoso.com",
            "accountEnabled": True,
            "userPrincipalName": "asmith@contoso.com",
            "otherMails": ["alice@gmail.com"],
            "proxyAddresses": [
                "smtp:ali@contoso.onmicrosoft.com",
                "SMTP:Alice.Smith@Contoso.com",
                "SIP:alice.smith@contoso.com",
                "X500:/o=ExchangeLabs/ou=Exchange/cn=alice",
                "SPO:SPO_1234@SPO_5678",
                "smtp:alice@legacy.org",
                "smtp:alice@sso.contoso.com",
            ],
        },
        ACCEPTED,
    )
    assert record.kind is RecipientKind.USER
    assert record.primary == "Alice.Smith@Contoso.com"
    assert record.addresses == ("Alice.Smith@Contoso.com", "ali@contoso.onmicrosoft.com")
    assert record.attributes["userPrincipalName"] == "asmith@contoso.com"


def test_upn_and_other_mails_are_never_addresses() -> None:
    record = map_user(
        {
            "id": "u2",
            "mail": None,
            "proxyAddresses": [],
            "accountEnabled": True,
            "userPrincipalName": "bob@contoso.com",
            "otherMails": ["bob@contoso.com"],
        },
        ACCEPTED,
    )
    assert record.addresses == ()
    assert record.primary is None


def test_guest_external_mail_and_ext_upn_are_never_accepted() -> None:
    guest = {
        "id": "g1",
        "userType": "Guest",
        "mail": "carol@fabrikam.com",
        "userPrincipalName": "carol_fabrikam.com#EXT#@contoso.onmicrosoft.com",
        "proxyAddresses": [
            "SMTP:carol@fabrikam.com",
            "smtp:carol_fabrikam.com#EXT#@contoso.onmicrosoft.com",
        ],
    }
    assert map_user(guest, ACCEPTED).addresses == ()
    unfiltered = map_user(guest)
    assert unfiltered.addresses == ("carol@fabrikam.com",)  # #EXT# dropped even without domains


def test_unverified_domain_is_never_accepted_even_as_primary() -> None:
    record = map_user(
        {
            "id": "u3",
            "mail": "dave@legacy.org",
            "proxyAddresses": ["SMTP:dave@legacy.org", "smtp:dave@contoso.com"],
        },
        ACCEPTED,
    )
    assert record.addresses == ("dave@contoso.com",)
    assert record.primary is None  # the first accepted address stands in


def test_disabled_account_stays_a_recipient_and_is_a_user_unless_purpose_is_known() -> None:
    shared = {
        "id": "s1",
        "mail": "info@contoso.com",
        "accountEnabled": False,
        "proxyAddresses": ["SMTP:info@contoso.com"],
    }
    record = map_user(shared, ACCEPTED)
    assert record.kind is RecipientKind.USER
    assert record.enabled is False
    assert record.addresses == ("info@contoso.com",)
    with_purpose = map_user({**shared, "mailboxSettings": {"userPurpose": "shared"}}, ACCEPTED)
    assert with_purpose.kind is RecipientKind.SHARED_MAILBOX
    room = map_user({**shared, "mailboxSettings": {"userPurpose": "room"}}, ACCEPTED)
    assert room.kind is RecipientKind.ROOM


def test_security_group_without_mail_has_no_addresses() -> None:
    record = map_group(
        {
            "id": "sg",
            "displayName": "VPN users",
            "mailEnabled": False,
            "securityEnabled": True,
            "groupTypes": [],
            "mail": None,
            "proxyAddresses": [],
        },
        ACCEPTED,
    )
    assert record.kind is RecipientKind.GROUP
    assert record.addresses == ()
    assert record.attributes["groupKind"] == "security"


def test_group_kinds_and_addresses() -> None:
    m365 = map_group(
        {
            "id": "m",
            "mailEnabled": True,
            "securityEnabled": False,
            "groupTypes": ["Unified"],
            "mail": "team@contoso.com",
            "proxyAddresses": [
                "SMTP:team@contoso.com",
                "SPO:SPO_x@SPO_y",
                "smtp:team@contoso.onmicrosoft.com",
            ],
        },
        ACCEPTED,
    )
    assert m365.addresses == ("team@contoso.com", "team@contoso.onmicrosoft.com")
    assert m365.attributes["groupKind"] == "microsoft365"
    dl = map_group({"id": "d", "mailEnabled": True, "securityEnabled": False, "groupTypes": []})
    assert dl.attributes["groupKind"] == "distribution"
    mes = map_group({"id": "e", "mailEnabled": True, "securityEnabled": True, "groupTypes": []})
    assert mes.attributes["groupKind"] == "mail_enabled_security"


def test_contact_alias_in_accepted_domain_is_deliverable() -> None:
    record = map_contact(
        {
            "id": "c1",
            "mail": "erin@partner.example",
            "proxyAddresses": ["SMTP:erin@partner.example", "smtp:erin.partner@contoso.com"],
        },
        ACCEPTED,
    )
    assert record.kind is RecipientKind.CONTACT
    assert record.addresses == ("erin.partner@contoso.com",)


def test_members_delta_adds_removes_and_ignores_devices() -> None:
    members = [
        {"@odata.type": "#microsoft.graph.user", "id": "u1"},
        {"@odata.type": "#microsoft.graph.group", "id": "g2"},
        {"@odata.type": "#microsoft.graph.orgContact", "id": "c3"},
        {"@odata.type": "#microsoft.graph.device", "id": "d4"},
        {"@odata.type": "#microsoft.graph.user", "id": "u5", "@removed": {"reason": "deleted"}},
        {"@odata.type": "#microsoft.graph.user"},
    ]
    mapped = map_page("groups", [{"id": "grp", "members@delta": members}])
    assert mapped.changes.member_adds == {"grp": ["u1", "g2", "c3"]}
    assert mapped.changes.member_removes == {"grp": ["u5"]}


def test_page_maps_removed_objects_to_deletes_and_skips_objects_without_id() -> None:
    mapped = map_page(
        "users",
        [
            {"id": "u1", "mail": "a@contoso.com", "proxyAddresses": ["SMTP:a@contoso.com"]},
            {"id": "u2", "@removed": {"reason": "changed"}},
            {"id": "u3", "@removed": {"reason": "deleted"}},
            {"mail": "no-id@contoso.com"},
            {"id": "u1", "mail": "a@contoso.com", "proxyAddresses": ["SMTP:a@contoso.com"]},
        ],
        accepted=ACCEPTED,
    )
    assert [r.external_id for r in mapped.changes.upserts] == ["u1"]  # a replay counts once
    assert mapped.changes.deletes == ["u2", "u3"]
    assert mapped.soft_deleted == ["u2"]
    assert mapped.skipped == 1


def test_membership_only_slice_does_not_overwrite_the_group() -> None:
    mapped = map_page(
        "groups",
        [
            {"id": "g1", "members@delta": [{"@odata.type": "#microsoft.graph.user", "id": "u9"}]},
        ],
    )
    assert mapped.changes.upserts == []
    assert mapped.changes.member_adds == {"g1": ["u9"]}


def test_page_member_items_without_id_or_of_other_types_are_ignored() -> None:
    mapped = map_page(
        "groups",
        [
            {
                "id": "g1",
                "members@delta": [
                    {"@odata.type": "#microsoft.graph.user"},
                    {"@odata.type": "#microsoft.graph.servicePrincipal", "id": "sp"},
                    {"@odata.type": "#Microsoft.Graph.OrgContact", "id": "c1"},
                    "garbage",
                ],
            },
        ],
    )
    assert mapped.changes.member_adds == {"g1": ["c1"]}


def test_page_member_slices_merge_and_the_last_item_for_a_pair_wins() -> None:
    user = "#microsoft.graph.user"
    mapped = map_page(
        "groups",
        [
            {"id": "g1", "displayName": "One", "members@delta": [
                {"@odata.type": user, "id": "u1"},
                {"@odata.type": user, "id": "u2"},
            ]},
            {"id": "g2", "members@delta": [
                {"@odata.type": user, "id": "u1"},
                {"@odata.type": user, "id": "u1", "@removed": {"reason": "deleted"}},
                {"@odata.type": "#microsoft.graph.User", "id": "u3"},
                {"@odata.type": user, "id": 7},
                {"id": "u4"},
                {"@odata.type": user, "id": ""},
            ]},
            {"id": "g1", "members@delta": [
                {"@odata.type": user, "id": "u2", "@removed": {"reason": "deleted"}},
                {"@odata.type": "#microsoft.graph.orgContact", "id": "c1"},
            ]},
            {"id": "g3", "members@delta": "not a list"},
        ],
    )  # fmt: skip
    assert [r.external_id for r in mapped.changes.upserts] == ["g1"]
    assert mapped.changes.member_adds == {"g1": ["u1", "c1"], "g2": ["u3", "7", "u4"]}
    assert mapped.changes.member_removes == {"g1": ["u2"], "g2": ["u1"]}


def test_addresses_keep_the_first_spelling_and_the_primary_survives_case_changes() -> None:
    record = map_user(
        {
            "id": "u4",
            "mail": "frank@contoso.com",
            "proxyAddresses": [
                "smtp:Frank@Contoso.com",
                "SMTP:FRANK@CONTOSO.COM",
                "Smtp:f@contoso.com",
                "smtp:frank_x.com#EXT#@contoso.onmicrosoft.com",
            ],
        },
        ACCEPTED,
    )
    assert record.primary == "FRANK@CONTOSO.COM"
    assert record.addresses == ("FRANK@CONTOSO.COM", "f@contoso.com")
