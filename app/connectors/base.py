"""The connector-facing names of the mirror's record types.

The records live in `app.directory.records` (the directory layer must not import connectors);
connectors import them from here.
"""

from app.directory.records import (
    ChangeSet,
    MemberRef,
    RecipientKind,
    RecipientRecord,
    SourceKind,
)

__all__ = ["ChangeSet", "MemberRef", "RecipientKind", "RecipientRecord", "SourceKind"]
