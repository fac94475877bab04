"""End to end: `roster serve` as a process with all three listeners, asked by a real Postfix.

Users are created through the HTTP API; Postfix probes go over raw SMTP. Trust is by network:
ROSTER_TRUSTED_NETWORKS is 127.0.0.2/32, so a probe bound to 127.0.0.2 is "internal" and one
from 127.0.0.1 is an untrusted stranger (all of 127/8 is loopback on Linux).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import empty_tables

from .conftest import POLICY_DEFAULT_ACTION
from .postfix import PrivatePostfix, SmtpProbe, free_port, postmap_query

pytestmark = pytest.mark.postfix

TRUSTED_SOURCE = "127.0.0.2"


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    log: Path
    http: httpx.AsyncClient
    ports: dict[str, int]
    postfix: PrivatePostfix

    async def probe(self, service: str, *, source: str | None = None) -> SmtpProbe:
        if source is None:
            return await SmtpProbe.connect(self.postfix.ports[service])
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", self.postfix.ports[service], local_addr=(source, 0)
        )
        probe = SmtpProbe(reader, writer)
        await probe.reply()
        await probe.command("EHLO internal.invalid")
        return probe

    def table(self, name: str) -> str:
        if name == "tcp":
            return f"tcp:127.0.0.1:{self.ports['tcp_table']}"
        return f"socketmap:inet:127.0.0.1:{self.ports['socketmap']}:{name}"

    async def postmap(self, key: str, table: str) -> tuple[int, str]:
        return await postmap_query(self.postfix.etc, key, self.table(table))


def roster(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def launch(args: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "app", *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )


@pytest.fixture
async def served(
    postfix_installed: None, database_url: str, engine: AsyncEngine, tmp_path: Path
) -> AsyncIterator[Served]:
    ports = {name: free_port() for name in ("http", "socketmap", "tcp_table", "policy")}
    env = os.environ | {
        "ROSTER_DATABASE_URL": database_url,
        "ROSTER_SOCKETMAP_LISTEN": f"127.0.0.1:{ports['socketmap']}",
        "ROSTER_TCP_TABLE_LISTEN": f"127.0.0.1:{ports['tcp_table']}",
        "ROSTER_POLICY_LISTEN": f"127.0.0.1:{ports['policy']}",
        "ROSTER_TRUSTED_NETWORKS": f"{TRUSTED_SOURCE}/32",
        "ROSTER_INDEX_POLL_INTERVAL": "0.1",
    }
    key = roster("apikey", "create", "e2e", "--scope", "write", env=env).strip().splitlines()[-1]
    log = tmp_path / "serve.log"
    proc = launch(["serve", "--port", str(ports["http"])], env=env, log=log)
    host = "127.0.0.1"
    sm, tcp, pol = ports["socketmap"], ports["tcp_table"], ports["policy"]
    services = {
        "socketmap": {
            "relay_domains": f"socketmap:inet:{host}:{sm}:domains",
            "relay_recipient_maps": f"socketmap:inet:{host}:{sm}:recipients",
        },
        "tcp_table": {"relay_recipient_maps": f"tcp:{host}:{tcp}"},
        "policy": {"smtpd_recipient_restrictions": f"check_policy_service inet:{host}:{pol}"},
    }
    postfix = PrivatePostfix(
        services,
        {
            "relay_domains": "contoso.com",
            "smtpd_policy_service_default_action": POLICY_DEFAULT_ACTION,
        },
    )
    http = httpx.AsyncClient(
        base_url=f"http://{host}:{ports['http']}", headers={"Authorization": f"Bearer {key}"}
    )
    try:
        for _ in range(300):
            assert proc.poll() is None, log.read_text()
            try:
                if (await http.get("/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        await asyncio.to_thread(postfix.start)
        yield Served(proc, log, http, ports, postfix)
    finally:
        await http.aclose()
        if proc.poll() is None:
            proc.terminate()
        await asyncio.to_thread(proc.wait, 30)
        await asyncio.to_thread(postfix.stop)
        await empty_tables(engine)


async def wait_until_valid(served: Served, address: str) -> None:
    for _ in range(100):
        if (await served.postmap(address, "recipients"))[0] == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{address} never became valid: {served.log.read_text()[-2000:]}")


async def test_roster_serve_answers_postfix_learns_only_trusted_senders_and_defers_when_down(
    served: Served,
) -> None:
    http = served.http
    assert (await http.post("/v1/domains", json={"name": "contoso.com"})).status_code == 201
    created = await http.post(
        "/v1/users", json={"email": "alice@contoso.com", "aliases": ["al@contoso.com"]}
    )
    assert created.status_code == 201, created.text
    log = served.log.read_text()
    for protocol in ("socketmap", "tcp_table", "policy"):
        assert f"roster {protocol} listening: 127.0.0.1:{served.ports[protocol]}" in log, log

    # postmap -q against every map.
    assert await served.postmap("AL+x@contoso.com", "recipients") == (0, "alice@contoso.com")
    assert await served.postmap("al@contoso.com", "primary") == (0, "alice@contoso.com")
    assert await served.postmap("contoso.com", "domains") == (0, "default")
    assert (await served.postmap("nobody@contoso.com", "recipients"))[0] == 1
    assert await served.postmap("alice@contoso.com", "tcp") == (0, "alice@contoso.com")
    assert (await served.postmap("nobody@contoso.com", "tcp"))[0] == 1

    # RCPT probes in every mode.
    for mode in ("socketmap", "tcp_table", "policy"):
        probe = await served.probe(mode)
        replies = await probe.rcpts(
            ["alice@contoso.com", "al@contoso.com", "alice+news@contoso.com", "ALICE@Contoso.COM"]
        )
        assert set(replies.values()) == {"250 2.1.5 Ok"}, (mode, replies)
        assert (await probe.rcpt("nobody@contoso.com")).startswith(
            "550 5.1.1 <nobody@contoso.com>: Recipient address rejected: User unknown"
        ), mode
        assert await probe.rcpt("x@elsewhere.org") == (
            "554 5.7.1 <x@elsewhere.org>: Relay access denied"
        )
        await probe.close()

    # A stranger claiming an internal sender teaches nothing; an internal client does.
    stranger = await served.probe("policy")
    assert await stranger.rcpt("alice@contoso.com", sender="spoof@contoso.com") == "250 2.1.5 Ok"
    await stranger.close()
    internal = await served.probe("policy", source=TRUSTED_SOURCE)
    assert await internal.rcpt("alice@contoso.com", sender="Newbie@contoso.com") == "250 2.1.5 Ok"
    assert await internal.rcpt("alice@contoso.com", sender="ext@gmail.com") == "250 2.1.5 Ok"
    await internal.close()
    await wait_until_valid(served, "newbie@contoso.com")
    probe = await served.probe("socketmap")
    assert await probe.rcpt("newbie@contoso.com") == "250 2.1.5 Ok"
    assert (await probe.rcpt("spoof@contoso.com")).startswith("550 5.1.1")
    await probe.close()
    learned = (await http.get("/v1/learned")).json()
    assert [(i["address"], i["status"], i["evidence"]) for i in learned["items"]] == [
        ("newbie@contoso.com", "learned", f"network:{TRUSTED_SOURCE}")
    ]

    # Roster stopped gracefully: Postfix defers, never accepts or bounces.
    served.proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal it caught (exit status -15).
    assert await asyncio.to_thread(served.proc.wait, 30) in (0, -signal.SIGTERM)
    for mode in ("socketmap", "policy"):
        probe = await served.probe(mode)
        replies = await probe.rcpts(["alice@contoso.com", "nobody@contoso.com"])
        assert all(r.startswith("451 4.3.") for r in replies.values()), (mode, replies)
        await probe.close()
    log = served.log.read_text()
    assert "mailproto listener stopped: protocol=policy" in log
    assert "Application shutdown complete" in log
