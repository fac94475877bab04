"""Errors Roster raises on purpose.

RosterError
  ├─ Malformed (400): an address or request that can never be valid
  ├─ Unauthorized (401) ─ Forbidden (403)
  ├─ NotFound (404)   ├─ Conflict (409)   ├─ PayloadTooLarge (413)   ├─ InvalidInput (422)
  ├─ NotConfigured (409): this deployment lacks the settings a feature needs; retrying cannot help
  ├─ LookupUnavailable (503): the mirror cannot answer reliably; mail must be deferred
  ├─ DatabaseUnavailable (503): a write could not reach the database; nothing was applied
  └─ SourceError: raised inside connectors, never rendered directly
       ├─ TemporarySourceError(delay): throttling, 5xx, network; retry later
       ├─ PermanentSourceError: bad credentials or permissions; stop this connector and report
       └─ SyncStateLost: the delta token expired; start a full round
"""

from __future__ import annotations

from typing import ClassVar


class RosterError(Exception):
    status_code: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Malformed(RosterError):
    status_code = 400


class Unauthorized(RosterError):
    status_code = 401


class Forbidden(RosterError):
    status_code = 403


class NotFound(RosterError):
    status_code = 404


class Conflict(RosterError):
    status_code = 409


class PayloadTooLarge(RosterError):
    status_code = 413


class InvalidInput(RosterError):
    status_code = 422


class NotConfigured(RosterError):
    """A feature this deployment has not set up (no LDAP directory for `/v1/auth/verify`).

    409, not 503: nothing is temporarily down, so `Retry-After` would send clients into a retry
    loop that only an operator can end. Not 422 or 400 either: the request itself is valid.
    409 says "the server's current state conflicts with this request", and the detail names the
    settings that change that state. (501 would fit too, but a 5xx reads as a server fault.)
    """

    status_code = 409


class LookupUnavailable(RosterError):
    status_code = 503


class DatabaseUnavailable(RosterError):
    status_code = 503


class SourceError(RosterError):
    """Raised inside connectors; the runner turns it into connector status, never into HTTP."""


class TemporarySourceError(SourceError):
    def __init__(self, message: str, *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentSourceError(SourceError):
    pass


class SyncStateLost(SourceError):
    pass
