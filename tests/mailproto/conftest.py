"""Fixtures for mail protocol tests: one private Postfix per session wired to Roster listeners.

The Postfix tests FAIL instead of skipping when CI=true and postfix is missing, so a CI image
without the package (scripts/install-postfix.sh) cannot silently pass.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from app.mailproto import server
from app.mailproto.policy import PolicyRequest
from app.mailproto.server import Listener

from .fakes import DictResolver
from .postfix import PrivatePostfix, SmtpProbe, free_port, is_installed

# Postfix's answer when smtpd cannot reach the policy service (docs/outside-behaviour.md §9); README
# tells operators to set the same.
POLICY_DEFAULT_ACTION = "451 4.3.0 Temporary lookup failure"


@pytest.fixture(scope="session")
def postfix_installed() -> None:
    if is_installed():
        return
    message = "postfix is not installed (run scripts/install-postfix.sh as root)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class RosterPostfix:
    """Roster listeners plus a Postfix with one smtpd per lookup mode (see `services`)."""

    postfix: PrivatePostfix
    resolver: DictResolver
    listeners: dict[str, Listener]
    learned: list[tuple[str, str]] = field(default_factory=list)

    async def probe(self, service: str) -> SmtpProbe:
        return await SmtpProbe.connect(self.postfix.ports[service])


@pytest.fixture(scope="session")
async def roster_postfix(postfix_installed: None) -> AsyncIterator[RosterPostfix]:
    learned: list[tuple[str, str]] = []

    async def learner(sender: str, request: PolicyRequest) -> None:
        learned.append((sender, request.get("sasl_username") or request.client_address))

    resolver = DictResolver()
    host = "127.0.0.1"
    listeners = {
        "socketmap": await server.start_socketmap_server(resolver, host, 0),
        "tcp_table": await server.start_tcp_table_server(resolver, host, 0),
        "policy": await server.start_policy_server(resolver, host, 0, learner=learner),
        "policy_trusted": await server.start_policy_server(
            resolver, host, 0, learner=learner, trusted_networks=["127.0.0.0/8"]
        ),
    }
    sm, tcp = listeners["socketmap"].port, listeners["tcp_table"].port
    dead = free_port()  # nothing listens there: "Roster is down"

    def policy(port: int) -> dict[str, str]:
        return {"smtpd_recipient_restrictions": f"check_policy_service inet:{host}:{port}"}

    services = {
        "socketmap": {"relay_recipient_maps": f"socketmap:inet:{host}:{sm}:recipients"},
        "socketmap_domains": {
            "relay_domains": f"socketmap:inet:{host}:{sm}:domains",
            "relay_recipient_maps": f"socketmap:inet:{host}:{sm}:recipients",
        },
        "tcp_table": {"relay_recipient_maps": f"tcp:{host}:{tcp}"},
        "policy": policy(listeners["policy"].port),
        "policy_trusted": policy(listeners["policy_trusted"].port),
        "socketmap_down": {"relay_recipient_maps": f"socketmap:inet:{host}:{dead}:recipients"},
        "policy_down": policy(dead),
    }
    settings = {
        "relay_domains": "example.com, contoso.com, slow.example",
        "smtpd_policy_service_default_action": POLICY_DEFAULT_ACTION,
    }
    postfix = PrivatePostfix(services, settings)
    try:
        await asyncio.to_thread(postfix.start)
        yield RosterPostfix(postfix, resolver, listeners, learned)
    finally:
        await asyncio.to_thread(postfix.stop)
        await server.close_all(listeners.values())
