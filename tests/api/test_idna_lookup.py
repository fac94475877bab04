"""An IDN domain as a user meets it: added in one spelling, looked up in another, over HTTP and
over the three Postfix protocols of the same running app (real sockets, real database)."""

from __future__ import annotations

import asyncio
import unicodedata
from typing import Any

import httpx
import pytest

from app.mailproto import netstring
from app.mailproto.tcp_table import quote
from app.settings import Settings
from tests.connectors.spreadsheet.files import csv_bytes
from tests.factories import api_key, auth

NFC = "bücher.example"
NFD = unicodedata.normalize("NFD", NFC)
KEY = "xn--bcher-kva.example"
PRIMARY = f"jürgen@{KEY}"
SPELLINGS = [  # one mailbox, as different clients and people type it
    f"Jürgen@{NFC}",
    unicodedata.normalize("NFD", f"Jürgen@{NFC}"),
    f"jürgen@{KEY}",
    "JÜRGEN@XN--BCHER-KVA.EXAMPLE",
    "jürgen@BÜCHER\uff0eEXAMPLE",  # a full-width full stop
    f"jürgen+news@{NFD}",
]


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(  # type: ignore[call-arg]
        database_url=database_url,
        index_poll_interval=0.05,
        socketmap_listen="127.0.0.1:0",
        tcp_table_listen="127.0.0.1:0",
        policy_listen="127.0.0.1:0",
        _env_file=None,
    )


@pytest.fixture
async def keys(app: Any) -> dict[str, str]:
    return {scope: await api_key(app, scope) for scope in ("lookup", "write")}


@pytest.fixture
async def juergen(client: httpx.AsyncClient, keys: dict[str, str]) -> dict[str, Any]:
    added = await client.post("/v1/domains", json={"name": NFC}, headers=auth(keys["write"]))
    assert added.status_code == 201, added.text
    assert added.json()["name"] == KEY
    response = await client.post(
        "/v1/users", json={"email": f"Jürgen@{NFD}"}, headers=auth(keys["write"])
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def ports(app: Any) -> dict[str, int]:
    return {listener.protocol: listener.port for listener in app.app.app.state.mail.listeners}


async def test_the_domain_added_twice_in_two_spellings_is_one_domain(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    for name in (NFC, NFD, KEY.upper(), "ｂüｃｈｅｒ.example"):
        response = await client.post(
            "/v1/domains", json={"name": name}, headers=auth(keys["write"])
        )
        assert response.status_code == 201, response.text
        assert response.json()["name"] == KEY
    listed = await client.get("/v1/domains", headers=auth(keys["write"]))
    assert [d["name"] for d in listed.json()["items"]] == [KEY]


async def test_an_invalid_idn_domain_is_refused_with_a_reason(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    for name in ("xn--bucher-xyd.example", "bü_cher.example"):
        response = await client.post(
            "/v1/domains", json={"name": name}, headers=auth(keys["write"])
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "Malformed"
        assert "IDNA" in response.json()["detail"]


async def test_every_spelling_is_accepted_over_http(
    client: httpx.AsyncClient, keys: dict[str, str], juergen: dict[str, Any]
) -> None:
    assert juergen["email"] == PRIMARY
    for spelling in SPELLINGS:
        response = await client.get(f"/v1/recipients/{spelling}", headers=auth(keys["lookup"]))
        assert response.status_code == 200, (spelling, response.text)
        body = response.json()
        assert (body["verdict"], body["primary"], body["recipient_id"]) == (
            "accept",
            PRIMARY,
            juergen["id"],
        )


async def test_an_unknown_mailbox_in_the_idn_domain_is_unknown_not_a_foreign_domain(
    client: httpx.AsyncClient, keys: dict[str, str], juergen: dict[str, Any]
) -> None:
    for address in (f"nobody@{NFD}", f"nobody@{KEY}", f"Nobody@{NFC}"):
        response = await client.get(f"/v1/recipients/{address}", headers=auth(keys["lookup"]))
        assert response.status_code == 404
        assert response.json()["reason"] == "unknown_recipient", address
    batch = await client.post(
        "/v1/recipients/lookup",
        json={"addresses": [SPELLINGS[1], f"nobody@{NFD}", "jürgen@xn--bucher-xyd.example"]},
        headers=auth(keys["lookup"]),
    )
    verdicts = [(i["verdict"], i["reason"]) for i in batch.json()["items"]]
    assert verdicts == [("accept", None), ("reject", "unknown_recipient"), ("reject", "malformed")]


async def test_a_fake_a_label_is_a_400_malformed(
    client: httpx.AsyncClient, keys: dict[str, str], juergen: dict[str, Any]
) -> None:
    # The Punycode of the NFD spelling: another name to DNS, and not valid IDNA.
    response = await client.get(
        "/v1/recipients/jürgen@xn--bucher-xyd.example", headers=auth(keys["lookup"])
    )
    assert response.status_code == 400
    body = response.json()
    assert (body["error"], body["reason"]) == ("Malformed", "malformed")
    assert "IDNA" in body["detail"]


async def ask(port: int, request: bytes, *, until: bytes = b"\n") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        if until == b",":  # a netstring: length, colon, payload, comma
            length = await asyncio.wait_for(reader.readuntil(b":"), 10)
            return await asyncio.wait_for(reader.readexactly(int(length[:-1]) + 1), 10)
        return await asyncio.wait_for(reader.readuntil(until), 10)
    finally:
        writer.close()


def policy_block(recipient: str) -> bytes:
    attrs = {
        "request": "smtpd_access_policy",
        "protocol_state": "RCPT",
        "client_address": "203.0.113.9",
        "sender": "someone@outside.org",
        "recipient": recipient,
    }
    return "".join(f"{k}={v}\n" for k, v in attrs.items()).encode() + b"\n"


async def test_every_spelling_is_accepted_by_socketmap_tcp_table_and_policy(
    app: Any, juergen: dict[str, Any]
) -> None:
    port = ports(app)
    for spelling in SPELLINGS:
        # Postfix lower-cases socketmap and tcp_table keys; the policy service gets them as typed.
        key = spelling.lower()
        socketmap = await ask(
            port["socketmap"], netstring.encode(b"recipients " + key.encode()), until=b","
        )
        assert socketmap == f"OK {PRIMARY},".encode(), spelling
        tcp = await ask(port["tcp_table"], b"get " + quote(key) + b"\n")
        assert tcp == b"200 " + quote(PRIMARY) + b"\n", spelling
        action = await ask(port["policy"], policy_block(spelling), until=b"\n\n")
        assert action == b"action=DUNNO\n\n", spelling
    domains = await ask(port["socketmap"], netstring.encode(b"domains " + NFD.encode()), until=b",")
    assert domains == b"OK default,"


async def test_an_unknown_mailbox_is_refused_by_every_protocol(
    app: Any, juergen: dict[str, Any]
) -> None:
    port = ports(app)
    for address in (f"nobody@{NFD}", f"nobody@{KEY}"):
        socketmap = await ask(
            port["socketmap"], netstring.encode(b"recipients " + address.encode()), until=b","
        )
        assert socketmap == b"NOTFOUND ,"
        tcp = await ask(port["tcp_table"], b"get " + quote(address) + b"\n")
        assert tcp == b"500 not%20found\n"
        # The policy service tells "unknown here" (550) from "not our domain" (DUNNO).
        action = await ask(port["policy"], policy_block(address), until=b"\n\n")
        assert action == b"action=550 5.1.1 User unknown\n\n", address
    foreign = await ask(port["policy"], policy_block("nobody@bücher.test"), until=b"\n\n")
    assert foreign == b"action=DUNNO\n\n"


async def test_a_sheet_in_nfd_lands_in_the_nfc_domain(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    content = csv_bytes([["email"], [f"anna@{NFD}"], [f"Bernd@{KEY}"]])
    response = await client.post(
        "/v1/imports",
        files={"file": ("people.csv", content, "text/csv")},
        params={"add_domains": "true"},
        headers=auth(keys["write"]),
    )
    assert response.status_code == 200, response.text
    assert response.json()["domains_added"] == [KEY]
    for address in (f"anna@{NFC}", f"bernd@{NFD}"):
        answer = await client.get(f"/v1/recipients/{address}", headers=auth(keys["lookup"]))
        assert answer.json()["verdict"] == "accept", address
