"""The mirror's tables: who the tenants are, which domains route to them, and their recipients."""

from __future__ import annotations

import os
import uuid
import zlib
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, BigIntId, UTCDateTime


def new_id() -> str:
    return str(uuid.uuid4())


def new_ids(count: int) -> list[str]:
    """`count` ids like `new_id()`'s from one read of the OS's random source: a read per id
    cost 3-8 µs in a bulk round (measured), about as much as building the rest of the row."""
    raw = os.urandom(16 * count)
    return [str(uuid.UUID(bytes=raw[i : i + 16], version=4)) for i in range(0, len(raw), 16)]


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    display_name: Mapped[str | None] = mapped_column(String(200))
    # The tenant's policy: each overrides one global setting; NULL inherits it.
    reject_disabled: Mapped[bool | None] = mapped_column(Boolean)
    max_staleness: Mapped[int | None] = mapped_column(BigInteger)  # seconds; 0 = never stale
    delete_threshold: Mapped[int | None] = mapped_column(BigInteger)
    delete_threshold_percent: Mapped[float | None] = mapped_column(Float)


class Domain(Base):
    """An accepted domain; its name is unique across tenants, so it routes a lookup."""

    __tablename__ = "domains"

    name: Mapped[str] = mapped_column(String(253), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Connector(Base):
    __tablename__ = "connectors"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # initial_sync | ready | error | needs_approval
    state: Mapped[str] = mapped_column(String(20), default="initial_sync")
    first_round_done: Mapped[bool] = mapped_column(Boolean, default=False)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sync_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    full_sync_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # Operational state, not config (env connectors can be paused): a paused one runs no round.
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Cursor(Base):
    """Where a connector's stream resumes: a Graph next/delta link, an LDAP USN, a round id."""

    __tablename__ = "cursors"

    connector_id: Mapped[str] = mapped_column(
        ForeignKey("connectors.id", ondelete="CASCADE"), primary_key=True
    )
    stream: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    round_id: Mapped[str | None] = mapped_column(String(36))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Recipient(Base):
    """A directory object, written only by the directory service.

    No foreign keys: in bulk rounds PostgreSQL's per-row checks (each also locking the parent
    row) cost 10-25 µs a row. `tenant_id` repeats the connector's tenant (lookups filter on
    it). Deleting a connector still takes its recipients, and their addresses, through the
    `connectors_drop_recipients` and `recipients_drop_addresses` triggers (migrations
    9b4d6f2a3c58, 8a3c5e1f2b47); a tenant's deletion cascades to its connectors. A SQLite batch
    migration that rebuilds this table drops its triggers and must create them again."""

    __tablename__ = "recipients"
    __table_args__ = (UniqueConstraint("connector_id", "external_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(String(36), index=True)
    connector_id: Mapped[str] = mapped_column(String(36))
    source: Mapped[str] = mapped_column(String(20))
    # Which of the connector's streams (Graph "users"/"groups", ...) owns it: sweeps are per stream.
    stream: Mapped[str] = mapped_column(String(50), default="")
    external_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(30))
    display_name: Mapped[str | None] = mapped_column(String(512))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source_hash: Mapped[str] = mapped_column(String(64))
    round_id: Mapped[str | None] = mapped_column(String(36))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Address(Base):
    """A normalized SMTP address of one recipient; unique within a tenant.

    No foreign keys: on PostgreSQL each checked row also locks its parent row, and that cost
    ~25 µs an address (most of a 100k-row import's database time). Only the directory
    service writes addresses, always for a recipient it holds in the same transaction; the
    cascade survives as the `recipients_drop_addresses` trigger (migration 8a3c5e1f2b47), so
    deleting a tenant or connector still takes its addresses."""

    __tablename__ = "addresses"

    tenant_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    address: Mapped[str] = mapped_column(String(254), primary_key=True)
    recipient_id: Mapped[str] = mapped_column(String(36), index=True)
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False)


class AddressConflict(Base):
    """An address claimed by a second object; the loser is listed here, never silently dropped."""

    __tablename__ = "address_conflicts"
    __table_args__ = (UniqueConstraint("tenant_id", "address", "claimant_id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(254))
    owner_id: Mapped[str] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"))
    claimant_id: Mapped[str] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"))
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Membership(Base):
    """A direct group -> member edge; the member is named by its connector's external id, so an
    edge may arrive before the member object does (Graph pages come in any order).

    No foreign keys on purpose: a tenant has millions of edges, and PostgreSQL's per-row
    referential checks doubled the cost of writing them. The service keeps them consistent:
    a group leaving the recipient set takes its edges with it (service.soft_delete).

    "Which groups hold this member" goes through `member_key` (see `member_key()`), not an index
    on the two text columns: that wide index took random inserts all over ~40k pages per page of
    edges, and a 1M-edge round spent most of its time (and gigabytes of WAL) maintaining it.
    """

    __tablename__ = "memberships"

    group_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_connector_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    member_external_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    member_key: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_memberships_member_key", "member_key"),)


def member_key(external_id: str) -> int:
    """A narrow index key for a member: CRC-32 of its external id. Collisions only cost a few
    extra index hits; queries always compare the exact columns as well."""
    return zlib.crc32(external_id.encode())


class PendingDeletion(Base):
    """A deletion held back until its round ends, and held longer by the mass-deletion guard."""

    __tablename__ = "pending_deletions"

    connector_id: Mapped[str] = mapped_column(
        ForeignKey("connectors.id", ondelete="CASCADE"), primary_key=True
    )
    external_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    reason: Mapped[str] = mapped_column(String(20))  # removed | sweep
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Change(Base):
    """The numbered change log: feeds every process's lookup index, the audit API and replicas."""

    __tablename__ = "changes"

    seq: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(36))
    recipient_id: Mapped[str | None] = mapped_column(String(36))
    action: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(20))
    detail: Mapped[str | None] = mapped_column(String(254))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiKey(Base):
    """An API key, stored as a SHA-256 hash: the key itself is shown once and never kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    # Tenant ids the key is restricted to; None = a global key (ids, so a re-created tenant of
    # the same name is not reached by an old key).
    tenant_ids: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
