"""Bind-through password verification against the real Samba DC."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from app.connectors.ldap.auth import verify_password

pytestmark = pytest.mark.samba


@pytest.mark.parametrize("username", ["alice@example.test", "EXAMPLE\\alice", "alice"])
def test_correct_password_is_ok(samba_dc, username: str) -> None:
    assert verify_password(samba_dc.settings(), username, SecretStr(samba_dc.user_password)) == "ok"


@pytest.mark.parametrize("username", ["alice@example.test", "alice", "nobody", ""])
def test_wrong_password_or_unknown_user_is_invalid(samba_dc, username: str) -> None:
    assert verify_password(samba_dc.settings(), username, SecretStr("Nope!123")) == "invalid"


def test_empty_password_is_invalid_not_an_anonymous_bind(samba_dc) -> None:
    assert verify_password(samba_dc.settings(), "alice", SecretStr("")) == "invalid"


def test_disabled_account_with_right_password(samba_dc) -> None:
    outcome = verify_password(samba_dc.settings(), "carol", SecretStr(samba_dc.user_password))
    assert outcome == "disabled_or_locked"


def test_unreachable_dc_is_unavailable(samba_dc) -> None:
    settings = samba_dc.settings(urls=["ldaps://localhost:1"])
    assert verify_password(settings, "alice@example.test", SecretStr(samba_dc.user_password)) == (
        "unavailable"
    )


def test_password_never_logged(samba_dc, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    verify_password(samba_dc.settings(), "alice", SecretStr("Secret-Value-42"))
    verify_password(samba_dc.settings(), "alice", SecretStr(samba_dc.user_password))
    assert "Secret-Value-42" not in caplog.text
    assert samba_dc.user_password not in caplog.text
