"""HTTP request and response shapes (docs/contracts.md §6, §11)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.directory.records import RecipientKind


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    error: str = Field(examples=["NotFound"])
    detail: str


class LookupAnswer(BaseModel):
    address: str
    valid: bool
    verdict: str = Field(description="accept, reject or tempfail")
    reason: str | None = None
    matched: str | None = None
    primary: str | None = None
    kind: str | None = None
    enabled: bool | None = None
    recipient_id: str | None = None
    tenant: str | None = None
    source: str | None = None


class LookupProblem(LookupAnswer):
    """A reject, tempfail or malformed answer: the lookup fields plus the common error fields."""

    error: str
    detail: str


class BatchLookup(Strict):
    addresses: list[str] = Field(max_length=1000)


class BatchAnswer(BaseModel):
    items: list[LookupAnswer]


class UserCreate(Strict):
    email: str
    display_name: str | None = Field(default=None, max_length=512)
    aliases: list[str] = Field(default_factory=list, max_length=500)
    enabled: bool = True
    kind: RecipientKind = RecipientKind.USER
    attributes: dict[str, Any] = Field(default_factory=dict)


class UserUpdate(Strict):
    email: str | None = None
    display_name: str | None = Field(default=None, max_length=512)
    aliases: list[str] | None = Field(default=None, max_length=500)
    enabled: bool | None = None
    kind: RecipientKind | None = None
    attributes: dict[str, Any] | None = None


class RecipientRead(BaseModel):
    id: str
    tenant: str
    kind: str
    source: str
    email: str | None
    aliases: list[str]
    display_name: str | None
    enabled: bool
    attributes: dict[str, Any]
    first_seen_at: datetime
    last_seen_at: datetime


class RecipientList(BaseModel):
    items: list[RecipientRead]
    total: int


class GroupCreate(Strict):
    display_name: str = Field(max_length=512)
    email: str | None = None
    aliases: list[str] = Field(default_factory=list, max_length=500)
    members: list[str] = Field(default_factory=list, max_length=10_000)


class MemberAdd(Strict):
    member: str = Field(description="recipient id or address")


class DomainCreate(Strict):
    name: str
    tenant: str | None = Field(
        default=None, description="an existing tenant's name; defaults to the default tenant"
    )


class TenantPolicyBody(Strict):
    """Overrides of the global settings for one tenant; null inherits the global value."""

    reject_disabled: bool | None = Field(
        default=None, description="reject disabled mailboxes (ROSTER_REJECT_DISABLED)"
    )
    max_staleness: int | None = Field(
        default=None, ge=0, description="seconds without a sync before lookups tempfail; 0 never"
    )
    delete_threshold: int | None = Field(
        default=None, ge=0, description="hold a round's deletions above this count; 0 disables"
    )
    delete_threshold_percent: float | None = Field(
        default=None, ge=0, le=100, description="also hold above this share of the objects"
    )


class TenantCreate(Strict):
    name: str = Field(
        examples=["fabrikam"],
        description="lower-case slug: a-z, 0-9 and '-', 1-63 characters",
        max_length=63,
    )
    display_name: str | None = Field(default=None, max_length=200, examples=["Fabrikam Ltd"])
    policy: TenantPolicyBody = Field(default_factory=TenantPolicyBody)


class TenantUpdate(Strict):
    display_name: str | None = Field(default=None, max_length=200)
    policy: TenantPolicyBody | None = Field(
        default=None, description="only the keys given change; a key set to null inherits again"
    )


class TenantRead(BaseModel):
    id: str
    name: str
    display_name: str | None
    created_at: datetime
    policy: TenantPolicyBody


class TenantList(BaseModel):
    items: list[TenantRead]


class DomainRead(BaseModel):
    name: str
    tenant: str
    source: str
    created_at: datetime


class DomainList(BaseModel):
    items: list[DomainRead]


class ChangeRead(BaseModel):
    seq: int
    tenant: str | None
    recipient_id: str | None
    action: str
    source: str
    at: datetime


class ChangeList(BaseModel):
    items: list[ChangeRead]
    next: int


class ConflictRead(BaseModel):
    address: str
    tenant: str
    owner_id: str
    claimant_id: str
    detected_at: datetime


class ConflictList(BaseModel):
    items: list[ConflictRead]


class Health(BaseModel):
    status: str
    detail: dict[str, Any] = Field(default_factory=dict)
