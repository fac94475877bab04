"""Generate a mirror of N users with 3 addresses each, straight into SQLite (for benchmarks)."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

from app.db.migrate import upgrade


def generate_sqlite(path: Path, users: int) -> None:
    if path.exists():
        path.unlink()
    upgrade(f"sqlite+aiosqlite:///{path}")
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    tenant, connector = str(uuid.uuid4()), str(uuid.uuid4())
    db = sqlite3.connect(path)
    with db:
        db.execute(
            "INSERT INTO tenants (id, name, created_at) VALUES (?, 'default', ?)", (tenant, now)
        )
        for name in ("contoso.com", "fabrikam.com"):
            db.execute(
                "INSERT INTO domains (name, tenant_id, source, created_at)"
                " VALUES (?, ?, 'manual', ?)",
                (name, tenant, now),
            )
        db.execute(
            "INSERT INTO connectors (id, tenant_id, name, kind, settings, state, first_round_done,"
            " full_sync_requested, last_success_at, progress, updated_at) VALUES (?, ?, 'manual',"
            " 'manual', '{}', 'ready', 1, 0, ?, '{}', ?)",
            (connector, tenant, now, now),
        )
        recipients = []
        addresses = []
        for i in range(1, users + 1):
            rid = str(uuid.uuid4())
            recipients.append(
                (
                    rid,
                    tenant,
                    connector,
                    "manual",
                    "",
                    rid,
                    "user",
                    f"User {i}",
                    1,
                    "{}",
                    "x",
                    now,
                    now,
                )
            )
            addresses += [
                (tenant, f"first{i}.last{i}@contoso.com", rid, 1),
                (tenant, f"u{i}@contoso.com", rid, 0),
                (tenant, f"alias{i}@fabrikam.com", rid, 0),
            ]
        db.executemany(
            "INSERT INTO recipients (id, tenant_id, connector_id, source, stream, external_id,"
            " kind, display_name, enabled, attributes, source_hash, first_seen_at, last_seen_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            recipients,
        )
        db.executemany(
            "INSERT INTO addresses (tenant_id, address, recipient_id, is_primary)"
            " VALUES (?, ?, ?, ?)",
            addresses,
        )
    db.close()
