"""What the directory service's writers share: which connector writes, what a page did, and each
record made ready to compare (normalized addresses, a digest of everything stored)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import orjson

from app.directory.addresses import normalize
from app.directory.models import Connector
from app.directory.records import RecipientRecord, SourceKind
from app.errors import InvalidInput, Malformed


@dataclass(slots=True)
class ConnectorRef:
    id: str
    tenant_id: str
    kind: SourceKind

    @classmethod
    def of(cls, connector: Connector) -> ConnectorRef:
        return cls(connector.id, connector.tenant_id, SourceKind(connector.kind))


@dataclass(slots=True)
class ApplyResult:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped_addresses: int = 0
    conflicts: int = 0
    recipient_ids: dict[str, str] = field(default_factory=dict)  # external id -> recipient id


@dataclass(slots=True)
class Prepared:
    record: RecipientRecord
    addresses: list[str]  # normalized, primary first
    digest: str


def prepare(record: RecipientRecord, *, strict: bool, result: ApplyResult) -> Prepared:
    """Normalize the addresses (primary first) and digest what would be stored: a replayed,
    unchanged object is recognised by its digest and not written again."""
    addresses: list[str] = []
    for raw in ([record.primary] if record.primary else []) + list(record.addresses):
        try:
            address = normalize(raw)
        except Malformed as exc:
            if strict:
                raise InvalidInput(f"{raw!r} is not a valid address: {exc.message}") from exc
            result.skipped_addresses += 1
            continue
        if address not in addresses:
            addresses.append(address)
    digest = hashlib.sha256(
        orjson.dumps(
            [
                record.kind.value,
                addresses,
                record.display_name,
                record.enabled,
                dict(record.attributes),
            ],
            option=orjson.OPT_SORT_KEYS,
        )
    ).hexdigest()
    return Prepared(record, addresses, digest)
