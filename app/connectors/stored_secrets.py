"""Every table that stores secrets, and `roster secrets rotate` over them.

Each table is one `SecretTable`: its purpose in the secret box (app/crypto.py), how to read its
tokens with their associated data, and how to write one back. Connector secrets plug in as one
more entry in `SECRET_TABLES`.

Rotation first opens every token of every table without writing: if the key list cannot open
one, it names the row (never the secret) and changes nothing. Then each table is rewritten under
the newest key in one transaction. A row rewritten meanwhile by a running replica (with the same
key list) is left as it is: the compare-and-set write skips it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.connectors.graph.models import GraphSubscription
from app.connectors.graph.secrets import client_state_binding
from app.crypto import GRAPH_CLIENT_STATE, Purpose, SecretBox, SecretKeyError

MAX_NAMED_ROWS = 20  # an error names at most this many rows


@dataclass(frozen=True, slots=True)
class StoredSecret:
    row_id: str
    token: str
    associated_data: bytes


@dataclass(frozen=True, slots=True)
class SecretTable:
    label: str  # "graph subscription secrets", as the rotate report says
    purpose: Purpose
    load: Callable[[AsyncSession], Awaitable[list[StoredSecret]]]
    # Writes `token` in place of `secret.token` if the row still holds it; True if written.
    store: Callable[[AsyncSession, StoredSecret, str], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Rotated:
    table: SecretTable
    count: int


class RotationRefused(SecretKeyError):
    """ROSTER_SECRET_KEY cannot open some stored secrets; nothing was rewritten."""


async def _load_client_states(session: AsyncSession) -> list[StoredSecret]:
    rows = await session.execute(
        select(
            GraphSubscription.id,
            GraphSubscription.connector_id,
            GraphSubscription.client_state_encrypted,
        ).order_by(GraphSubscription.id)
    )
    return [
        StoredSecret(sub_id, token, client_state_binding(sub_id, connector_id))
        for sub_id, connector_id, token in rows
    ]


async def _store_client_state(session: AsyncSession, secret: StoredSecret, token: str) -> bool:
    result = await session.execute(
        update(GraphSubscription)
        .where(
            GraphSubscription.id == secret.row_id,
            GraphSubscription.client_state_encrypted == secret.token,
        )
        .values(client_state_encrypted=token)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


GRAPH_CLIENT_STATES = SecretTable(
    label="graph subscription secrets",
    purpose=GRAPH_CLIENT_STATE,
    load=_load_client_states,
    store=_store_client_state,
)
SECRET_TABLES: tuple[SecretTable, ...] = (GRAPH_CLIENT_STATES,)


async def rotate_all(
    sessionmaker: async_sessionmaker[AsyncSession],
    secret_key: SecretStr | str | None,
    *,
    tables: Sequence[SecretTable] = SECRET_TABLES,
) -> list[Rotated]:
    """Re-encrypt every stored secret with the first key; RotationRefused changes nothing."""
    boxes = [SecretBox(secret_key, purpose=table.purpose) for table in tables]
    problems: list[str] = []
    async with sessionmaker() as session:
        for table, box in zip(tables, boxes, strict=True):
            for secret in await table.load(session):
                try:
                    box.decrypt(secret.token, associated_data=secret.associated_data)
                except SecretKeyError as exc:
                    problems.append(f"{table.label}: row {secret.row_id}: {exc.message}")
    if problems:
        shown = problems[:MAX_NAMED_ROWS]
        if len(problems) > len(shown):
            shown.append(f"... and {len(problems) - len(shown)} more")
        raise RotationRefused(
            f"{len(problems)} stored secret(s) cannot be opened with ROSTER_SECRET_KEY, "
            "nothing was rotated:\n  " + "\n  ".join(shown)
        )
    done: list[Rotated] = []
    for table, box in zip(tables, boxes, strict=True):
        count = 0
        async with sessionmaker.begin() as session:  # one transaction per table
            for secret in await table.load(session):
                token = box.rotate(secret.token, associated_data=secret.associated_data)
                count += await table.store(session, secret, token)
        done.append(Rotated(table, count))
    return done
