"""Senders seen in outbound mail flow, counted until they become `learned` recipients."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, BigIntId


class LearnedSender(Base):
    __tablename__ = "learned_senders"
    __table_args__ = (UniqueConstraint("tenant_id", "address"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(254))
    count: Mapped[int] = mapped_column(Integer, default=0)
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # how it was vouched for: "sasl:<username>", "network:<client address>" or "api:<key name>"
    evidence: Mapped[str | None] = mapped_column(String(300))
    recipient_id: Mapped[str | None] = mapped_column(
        ForeignKey("recipients.id", ondelete="SET NULL")
    )
    # set when an authoritative source deleted the address after it was learned
    contradicted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    contradiction: Mapped[str | None] = mapped_column(Text)
