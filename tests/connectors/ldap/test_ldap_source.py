"""LdapSource decisions that need no DC: error translation and when a full round is due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from app.connectors.ldap.client import LdapPermanentError, LdapTemporaryError
from app.connectors.ldap.reader import LdapCursorInvalid
from app.connectors.ldap.source import LdapSource, _source_error
from app.errors import PermanentSourceError, SyncStateLost, TemporarySourceError
from app.settings import LdapSettings

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def settings(**overrides: object) -> LdapSettings:
    values: dict[str, object] = {"bind_dn": "svc@corp.example", "bind_password": SecretStr("pw")}
    return LdapSettings(**(values | overrides))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (LdapTemporaryError("no DC reachable"), TemporarySourceError),
        (LdapPermanentError("invalid credentials"), PermanentSourceError),
        (LdapCursorInvalid("invocationId changed"), SyncStateLost),
        (OSError("connection reset"), TemporarySourceError),
    ],
)
def test_reader_errors_become_runner_errors(error: Exception, expected: type) -> None:
    translated = _source_error(error, settings())
    assert isinstance(translated, expected)
    assert str(error) in str(translated)


def test_unexpected_errors_pass_through() -> None:
    error = KeyError("member")
    assert _source_error(error, settings()) is error


def test_full_round_is_due_after_the_interval() -> None:
    source = LdapSource(settings(full_round_interval=timedelta(hours=6)), clock=lambda: NOW)
    recent = {"full_started_at": (NOW - timedelta(hours=5)).isoformat()}
    old = {"full_started_at": (NOW - timedelta(hours=6)).isoformat()}
    assert not source.full_round_due(recent)
    assert source.full_round_due(old)
    assert source.full_round_due({})


def test_a_zero_interval_disables_periodic_full_rounds() -> None:
    source = LdapSource(settings(full_round_interval=timedelta(0)), clock=lambda: NOW)
    assert not source.full_round_due({"full_started_at": "2000-01-01T00:00:00+00:00"})


async def test_due_full_round_and_unreadable_cursor_ask_the_runner_for_a_full_round() -> None:
    source = LdapSource(settings(), clock=lambda: NOW)
    due = {"mode": "incremental", "dc": {}, "full_started_at": "2000-01-01T00:00:00+00:00"}
    with pytest.raises(SyncStateLost, match="periodic"):
        await anext(source.pages("directory", due))
    broken = {"mode": "incremental", "dc": {"x": 1}, "full_started_at": NOW.isoformat()}
    with pytest.raises(SyncStateLost, match="unreadable"):
        await anext(source.pages("directory", broken))
    with pytest.raises(PermanentSourceError):
        await anext(source.pages("users", None))


def test_registry_signature() -> None:
    source = LdapSource(settings())
    assert source.streams == ("directory",)
    assert source.domains is None
