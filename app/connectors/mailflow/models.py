"""Senders seen in outbound mail flow, counted until they become `learned` recipients."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, BigIntId, UTCDateTime


class LearnedSender(Base):
    __tablename__ = "learned_senders"
    __table_args__ = (UniqueConstraint("tenant_id", "address"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(254))
    count: Mapped[int] = mapped_column(Integer, default=0)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # how it was vouched for: "sasl:<username>", "network:<client address>" or "api:<key name>"
    evidence: Mapped[str | None] = mapped_column(String(300))
    recipient_id: Mapped[str | None] = mapped_column(
        ForeignKey("recipients.id", ondelete="SET NULL")
    )
    # The authoritative (Graph/LDAP) recipient last seen owning the address. No foreign key on
    # purpose: if that row is ever purged, the memory that the directory vouched for it stays.
    authority_id: Mapped[str | None] = mapped_column(String(36))
    authority_source: Mapped[str | None] = mapped_column(String(20))
    # set when an authoritative source deleted the address after it was learned
    contradicted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    contradiction: Mapped[str | None] = mapped_column(Text)
