"""Pass-through password verification: bind to a DC as the user; nothing is stored.

The password is only unwrapped at the bind; it never reaches a log line or an error message.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Literal

import ldap3
from ldap3.core import exceptions as lx
from ldap3.utils.conv import escape_filter_chars
from pydantic import SecretStr

from app.connectors.ldap.client import (
    LdapError,
    LdapPermanentError,
    LdapTemporaryError,
    connect,
    open_connection,
    parse_url,
)
from app.connectors.ldap.config import LdapSettings
from app.connectors.ldap.reader import read_dc_state

logger = logging.getLogger(__name__)

AuthOutcome = Literal["ok", "invalid", "disabled_or_locked", "unavailable"]

# The "data" code AD puts in the invalidCredentials diagnostic message.
# Ref: https://learn.microsoft.com/troubleshoot/windows-server/windows-security/logon-failure-event-ids
# 530 logon hours, 531 workstation, 532 password expired, 533 disabled, 701 account expired,
# 773 must change password, 775 locked out. 52e is a plain wrong password.
_BLOCKED_CODES = frozenset({"530", "531", "532", "533", "701", "773", "775"})
_DATA_CODE = re.compile(r"\bdata ([0-9a-f]{3,4})\b", re.IGNORECASE)


def _bind_name(settings: LdapSettings, username: str) -> str | None:
    """UPNs and DOMAIN\\user bind as given; a bare sAMAccountName is resolved to its DN."""
    if "@" in username or "\\" in username or "=" in username:
        return username
    with connect(settings) as session:
        naming_context = settings.base_dn or [read_dc_state(session).default_naming_context]
        for base in naming_context:
            try:
                session.connection.search(
                    base,
                    "(&(objectCategory=person)(objectClass=user)"
                    f"(sAMAccountName={escape_filter_chars(username)}))",
                    ldap3.SUBTREE,
                    attributes=["sAMAccountName"],
                    size_limit=2,
                )
            except (lx.LDAPException, OSError) as exc:
                raise LdapTemporaryError(f"user lookup failed: {type(exc).__name__}") from None
            entries = [
                e for e in session.connection.response or [] if e["type"] == "searchResEntry"
            ]
            if len(entries) == 1:
                return str(entries[0]["dn"])
    return None


def verify_password(settings: LdapSettings, username: str, password: SecretStr) -> AuthOutcome:
    """Bind as the user against the first reachable DC and classify the answer."""
    # An empty password makes a simple bind "unauthenticated" and it succeeds (RFC 4513 5.1.2).
    if not username.strip() or not password.get_secret_value():
        return "invalid"
    try:
        bind_name = _bind_name(settings, username.strip())
    except LdapError as exc:
        logger.warning("ldap auth unavailable: user=%s error=%s", username, exc)
        return "unavailable"
    if bind_name is None:
        logger.info("ldap auth result: user=%s outcome=invalid reason=unknown_user", username)
        return "invalid"
    outcome = _try_bind(settings, bind_name, password)
    logger.info("ldap auth result: user=%s outcome=%s", username, outcome)
    return outcome


def _try_bind(settings: LdapSettings, bind_name: str, password: SecretStr) -> AuthOutcome:
    for url in settings.urls:
        endpoint = parse_url(url)
        try:
            connection = open_connection(
                settings, endpoint, bind_name, password, keep_bind_errors=True
            )
        except lx.LDAPInvalidCredentialsResult as exc:
            match = _DATA_CODE.search(str(exc.message or ""))
            if match and match.group(1).lower() in _BLOCKED_CODES:
                return "disabled_or_locked"
            return "invalid"
        except LdapTemporaryError as exc:
            logger.warning("ldap auth dc unavailable, trying next: url=%s error=%s", url, exc)
            continue
        except LdapPermanentError as exc:
            logger.error("ldap auth cannot reach a usable dc: url=%s error=%s", url, exc)
            return "unavailable"
        with contextlib.suppress(lx.LDAPException, OSError):
            connection.unbind()
        return "ok"
    return "unavailable"
