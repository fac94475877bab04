"""Recipient ids made in bulk are as good as one at a time: random version-4 UUIDs, all distinct."""

from __future__ import annotations

import uuid

from app.directory.models import new_id, new_ids


def test_bulk_ids_are_distinct_version_4_uuids_in_the_same_form() -> None:
    ids = new_ids(10_000)
    assert len(set(ids)) == 10_000
    parsed = [uuid.UUID(i) for i in ids]
    assert {(u.version, u.variant) for u in parsed} == {(4, uuid.RFC_4122)}
    assert all(str(u) == i for u, i in zip(parsed, ids, strict=True))
    assert len(new_id()) == len(ids[0]) and new_ids(0) == []
