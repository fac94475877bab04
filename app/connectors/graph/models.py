"""Graph change-notification state: subscriptions and the webhook inbox.

How they are used: docs/architecture.md §9.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, BigIntId, UTCDateTime


class GraphSubscription(Base):
    __tablename__ = "graph_subscriptions"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)  # Graph's subscription id
    connector_id: Mapped[str] = mapped_column(ForeignKey("connectors.id", ondelete="CASCADE"))
    resource: Mapped[str] = mapped_column(String(100))  # /users, /groups
    # clientState encrypted with ROSTER_SECRET_KEY: a database leak alone does not reveal it
    client_state_encrypted: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    renewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_lifecycle_event: Mapped[str | None] = mapped_column(String(50))


class WebhookInbox(Base):
    """Verified notifications, stored before the 202; a worker turns them into delta rounds."""

    __tablename__ = "webhook_inbox"
    __table_args__ = (Index("ix_webhook_inbox_pending", "connector_id", "handled_at"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    connector_id: Mapped[str] = mapped_column(ForeignKey("connectors.id", ondelete="CASCADE"))
    subscription_id: Mapped[str] = mapped_column(String(100))
    stream: Mapped[str] = mapped_column(String(50))  # users | groups
    kind: Mapped[str] = mapped_column(String(30))  # change | lifecycle:<event>
    resource: Mapped[str | None] = mapped_column(String(300))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
