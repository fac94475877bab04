"""Turn good rows plus what the mirror holds into a plan: records, memberships, removals, diff.

Pure (no database), so the dry run and the import compute exactly the same diff. The rules the
operator sees:
- every address must be in one of the tenant's accepted domains (or be added, `add_domains`);
- an address owned by another connector is a conflict, reported on the row with the owner named;
- a group named in the groups column, by address or by name, resolves as `group_targets`
  says (a row of the file, a group of the tenant, or a new group);
- `replace` removes this connector's objects the file no longer has, except those named on
  refused rows (a typo never deletes a mailbox), subject to the deletion guard.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.connectors.base import RecipientKind, RecipientRecord
from app.connectors.guard import GuardSettings
from app.connectors.spreadsheet.group_targets import (
    GroupResolver,
    GroupTargets,
    NamedGroup,
    is_foreign,
)
from app.connectors.spreadsheet.records import (
    attributes_of,
    bare_group,
    diff_row,
    named_group,
    record_of,
)
from app.connectors.spreadsheet.report import Diff, DiffRow, ImportMode
from app.connectors.spreadsheet.results import RowError, SheetRow
from app.directory.addresses import domain_of

_GROUP = RecipientKind.GROUP
_KIND_VALUES = {kind: kind.value for kind in RecipientKind}  # Enum.value is slow per row
_MAX_PASSES = 5  # a refused group row can refuse the rows naming it; settles in a few passes


@dataclass(frozen=True, slots=True)
class Owner:
    """Who holds an address in the tenant now."""

    connector_id: str
    external_id: str
    kind: str
    label: str  # "Alice Smith (graph connector 'entra')", for messages
    authoritative: bool
    recipient_id: str = ""


@dataclass(slots=True)
class Stored:
    """One object of this connector as the mirror holds it (deleted ones too: re-adds)."""

    kind: str
    display_name: str | None
    enabled: bool
    attributes: dict[str, Any]
    deleted: bool
    primary: str | None = None
    addresses: set[str] = field(default_factory=set)


@dataclass(slots=True)
class MirrorState:
    connector_id: str
    accepted_domains: set[str]  # the tenant's
    owners: dict[str, Owner]  # address -> owner, for the file's addresses only
    stored: dict[str, Stored]  # external id -> object of this connector
    # Group plan key (see group_targets) -> external ids of this connector's members in it.
    members: dict[str, set[str]]
    pending: set[str]  # deletions the guard already holds
    groups_by_name: dict[str, list[NamedGroup]] = field(default_factory=dict)  # by name_key


@dataclass(frozen=True, slots=True)
class Columns:
    """Headers as the file spells them, for error reports."""

    email: str
    aliases: str
    groups: str
    kind: str


@dataclass(slots=True)
class Plan:
    errors: list[RowError]
    good_rows: int
    upserts: list[RecipientRecord]
    member_sets: dict[str, list[str]]  # by plan key: another source's groups are `id:` keys
    removes: list[str]  # external ids to remove (before the guard)
    held: int  # removals the guard would hold (0: none)
    domains_to_add: list[str]
    diff: Diff
    wanted: list[str]  # external ids the file keeps: held deletions of these are released
    groups_created: list[str] = field(default_factory=list)  # as the file names them


def changed_fields(
    row: SheetRow, kind: RecipientKind, attributes: dict[str, Any], stored: Stored
) -> list[str]:
    """What `record_of(row, kind, attributes)` would change; no record is built for the
    (usually many) unchanged rows."""
    fields = []
    if _KIND_VALUES[kind] != stored.kind:
        fields.append("kind")
    if row.display_name != stored.display_name:
        fields.append("display name")
    if row.enabled != stored.enabled:
        fields.append("enabled")
    if attributes != stored.attributes:
        fields.append("attributes")
    if {row.email, *row.aliases} != stored.addresses or stored.primary != row.email:
        fields.append("aliases")
    return fields


class _Planner:
    def __init__(
        self,
        rows: Sequence[SheetRow],
        *,
        columns: Columns,
        mode: ImportMode,
        state: MirrorState,
        refused_addresses: Iterable[str],
        add_domains: bool,
        guard: GuardSettings,
    ) -> None:
        self.rows = rows
        self.columns = columns
        self.mode = mode
        self.state = state
        self.refused = set(refused_addresses)
        self.add_domains = add_domains
        self.guard = guard
        self.errors: dict[int, list[RowError]] = {}
        self.new_domains: set[str] = set()

    def refuse(self, row: SheetRow, column: str, reason: str) -> None:
        listed = self.errors.setdefault(row.row, [])
        if not any(e.column == column and e.reason == reason for e in listed):
            listed.append(RowError(row.row, column, reason))

    def _domain_ok(self, address: str) -> bool:
        domain = domain_of(address)
        if domain in self.state.accepted_domains:  # also tested inline by the per-row loops
            return True
        if self.add_domains:
            self.new_domains.add(domain)
            return True
        return False

    def check_addresses(self) -> None:
        """Domains and owners of each row's own addresses; independent of the other rows."""
        own = self.state.connector_id
        owners = self.state.owners
        accepted = self.state.accepted_domains
        for row in self.rows:
            column = self.columns.email
            for address in (row.email, *row.aliases):
                if address.rpartition("@")[2] not in accepted and not self._domain_ok(address):
                    domain = domain_of(address)
                    self.refuse(
                        row,
                        column,
                        f"{address}: {domain} is not an accepted domain; add it first "
                        f"(roster domains add {domain}) or import with --add-domains",
                    )
                else:
                    owner = owners.get(address)
                    if owner is not None and owner.connector_id != own:
                        self.refuse(row, column, _conflict(address, owner))
                column = self.columns.aliases

    def protected(self, good_emails: set[str]) -> set[str]:
        """Objects named on refused rows: never removed, whatever the mode."""
        refused = set(self.refused)
        for row in self.rows:
            if row.row in self.errors:
                refused.update((row.email, *row.aliases))
        out = set()
        for address in refused:
            owner = self.state.owners.get(address)
            if owner is not None and owner.connector_id == self.state.connector_id:
                out.add(owner.external_id)
            elif address in self.state.stored:
                out.add(address)
        return out - good_emails

    def check_moves(self, good: list[SheetRow], keep: set[str], removed: set[str]) -> None:
        """An address held by an earlier object of this connector that this file does not
        rewrite can only move if that object is removed first (replace, guard not holding)."""
        own = self.state.connector_id
        rewritten = {r.email for r in good}  # their old addresses are released in the same apply
        held_elsewhere = {
            address: owner
            for address, owner in self.state.owners.items()
            if owner.connector_id == own and owner.external_id not in rewritten
        }
        if not held_elsewhere:  # a first import, or a re-import of the same rows
            return
        for row in good:
            for i, address in enumerate((row.email, *row.aliases)):
                owner = held_elsewhere.get(address)
                if owner is None:
                    continue
                if owner.external_id in keep or owner.external_id not in removed:
                    column = self.columns.email if i == 0 else self.columns.aliases
                    self.refuse(
                        row,
                        column,
                        f"{address} is already an address of {owner.external_id} (imported "
                        "earlier), which this import keeps; remove it there first, or import "
                        "with --mode replace without that row",
                    )

    def run(self) -> Plan:
        self.check_addresses()
        for _ in range(_MAX_PASSES):
            before = sum(len(v) for v in self.errors.values())
            good = [r for r in self.rows if r.row not in self.errors]
            good_emails = {r.email for r in good}
            targets = GroupResolver(
                self.state, self.columns, refuse=self.refuse, domain_ok=self._domain_ok
            ).resolve(good)
            keep = good_emails | {k for k in targets.all_keys() if not is_foreign(k)}
            protected = self.protected(good_emails)
            live = {ext for ext, s in self.state.stored.items() if not s.deleted}
            removes: set[str] = set()
            if self.mode is ImportMode.REPLACE:
                removes = live - keep - protected
            pending = (self.state.pending - keep) | removes
            held = _over_threshold(len(pending), len(live), self.guard)
            self.check_moves(good, keep, set() if held else pending)
            if sum(len(v) for v in self.errors.values()) == before:
                break
        return self._plan(good, targets, keep, protected, pending, held)

    def _plan(
        self,
        good: list[SheetRow],
        targets: GroupTargets,
        keep: set[str],
        protected: set[str],
        pending: set[str],
        held: bool,
    ) -> Plan:
        stored = self.state.stored
        groups_of: dict[str, set[str]] = {}
        for group, members in self.state.members.items():
            for member in members:
                groups_of.setdefault(member, set()).add(group)
        diff = Diff()
        upserts: list[RecipientRecord] = []
        no_groups: set[str] = set()
        for row in good:
            kind = _GROUP if row.email in targets.group_rows else row.kind
            current = stored.get(row.email)
            if current is None or current.deleted:
                diff.adds.append(DiffRow(row.row, row.email, _KIND_VALUES[kind]))
                upserts.append(record_of(row, kind))
                continue
            attributes = attributes_of(row)
            fields = changed_fields(row, kind, attributes, current)
            if fields:
                upserts.append(record_of(row, kind, attributes))
            old_groups = groups_of.get(row.email, no_groups)
            new_groups = targets.of(row)
            if old_groups != new_groups:
                fields.append("groups")
            if fields:
                diff.updates.append(DiffRow(row.row, row.email, _KIND_VALUES[kind], tuple(fields)))
            else:
                diff.unchanged.append(DiffRow(row.row, row.email, _KIND_VALUES[kind]))
        created: list[str] = []
        for address, ext in sorted(targets.by_address.items()):
            if ext in targets.group_rows or ext != address:
                continue
            current = stored.get(ext)
            if current is None or current.deleted:
                label = targets.labels.get(ext)
                diff.adds.append(DiffRow(None, ext, _KIND_VALUES[_GROUP]))
                upserts.append(bare_group(ext, label))
                created.append(f"{label} <{ext}>" if label else ext)
        for ext, name in sorted(targets.new_named.items()):
            current = stored.get(ext)
            if current is None or current.deleted:
                diff.adds.append(diff_row(ext, _KIND_VALUES[_GROUP], name))
                upserts.append(named_group(ext, name))
                created.append(name)
        removed = sorted(pending) if not held else []
        for ext in removed:
            current = stored.get(ext)
            if current is None:
                diff.removes.append(DiffRow(None, ext, "?"))
            else:
                diff.removes.append(diff_row(ext, current.kind, current.display_name))
        return Plan(
            errors=sorted((e for v in self.errors.values() for e in v), key=lambda e: e.row),
            good_rows=len(good),
            upserts=upserts,
            member_sets=self._member_sets(good, targets, protected, set(removed)),
            removes=sorted(pending),
            held=len(pending) if held else 0,
            domains_to_add=sorted(self.new_domains),
            diff=diff,
            wanted=sorted(keep),
            groups_created=created,
        )

    def _member_sets(
        self,
        good: list[SheetRow],
        targets: GroupTargets,
        protected: set[str],
        removed: set[str],
    ) -> dict[str, list[str]]:
        """Full member lists of the groups whose membership changes.

        Membership is stated per member row: a row in the file is a member of exactly the groups
        it lists. Replace: members not in the file leave (unless protected). Merge: they stay.
        """
        in_file = {r.email for r in good}
        desired: dict[str, set[str]] = {}
        for group, members in self.state.members.items():
            if group in removed:
                continue
            if self.mode is ImportMode.REPLACE:
                kept = {m for m in members if m in protected}
            else:
                kept = {m for m in members if m not in in_file}
            desired[group] = kept
        for row in good:
            for key in targets.of(row):
                desired.setdefault(key, set()).add(row.email)
        return {
            group: sorted(members)
            for group, members in desired.items()
            if members != self.state.members.get(group, set())
        }


def build_plan(
    rows: Sequence[SheetRow],
    *,
    columns: Columns,
    mode: ImportMode,
    state: MirrorState,
    refused_addresses: Iterable[str] = (),
    add_domains: bool = False,
    guard: GuardSettings | None = None,
) -> Plan:
    """Check the rows against the mirror and work out every change; writes nothing."""
    return _Planner(
        rows,
        columns=columns,
        mode=mode,
        state=state,
        refused_addresses=refused_addresses,
        add_domains=add_domains,
        guard=guard or GuardSettings(),
    ).run()


def _conflict(address: str, owner: Owner) -> str:
    if owner.authoritative:
        return (
            f"{address} belongs to {owner.label}; the directory wins address conflicts, so "
            "remove the address from this file (conflict)"
        )
    return f"{address} already belongs to {owner.label}; remove it there or from this file"


def _over_threshold(count: int, live: int, settings: GuardSettings) -> bool:
    """The test `guard.settle` applies, evaluated before anything is written."""
    if count == 0:
        return False
    if settings.threshold > 0 and count > settings.threshold:
        return True
    return (
        settings.threshold_percent > 0
        and live > 0
        and count * 100 > settings.threshold_percent * live
    )
