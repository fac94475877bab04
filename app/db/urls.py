"""Database URLs as people write them, turned into the async driver Roster runs on; shared by
the env settings and the engine, so both accept the same spellings."""

from __future__ import annotations

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./roster.db"


def async_database_url(url: str) -> str:
    """Accept plain `sqlite://` and `postgresql://` URLs; Roster chooses the async driver."""
    for plain, driver in (
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql://", "postgresql+psycopg://"),
        ("postgres://", "postgresql+psycopg://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url
