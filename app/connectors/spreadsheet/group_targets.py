"""Which group each groups-column entry means: a row of the file, a group of the tenant, or new.

Rules the operator sees (README, "Spreadsheet import"):
- an address is the row with that address (its kind becomes `group`; empty kind reads as `user`
  and is promoted), else the tenant's group with that address (any source), else a new group
  with that address;
- a name is the group of that display name (case-insensitive): a group row of the file, a
  `Name <address>` entry of the file, or a live group of the tenant (any source); two different
  groups of that name are an error naming both; none creates an address-less spreadsheet group,
  which carries membership but is no recipient (lookups never see it);
- members this connector adds to another source's group are edges this connector owns: the
  other source's rounds leave them alone, and this connector's imports replace them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from app.connectors.base import RecipientKind
from app.connectors.spreadsheet.group_entries import name_key, named_group_id
from app.connectors.spreadsheet.results import SheetRow
from app.directory.addresses import domain_of

if TYPE_CHECKING:
    from app.connectors.spreadsheet.plan import Columns, MirrorState

_GROUP = RecipientKind.GROUP
FOREIGN_PREFIX = "id:"  # plan key of another connector's group: "id:" + its recipient id


def foreign_key(recipient_id: str) -> str:
    return FOREIGN_PREFIX + recipient_id


def is_foreign(key: str) -> bool:
    return key.startswith(FOREIGN_PREFIX)


@dataclass(frozen=True, slots=True)
class NamedGroup:
    """A live group of the tenant, as a name in the groups column may mean it."""

    key: str  # this connector's external id, or `foreign_key(recipient id)`
    label: str  # "Sales <sales@contoso.com> (graph connector 'entra')", for messages


@dataclass(slots=True)
class GroupTargets:
    by_address: dict[str, str] = field(default_factory=dict)  # group address -> plan key
    by_name: dict[str, str] = field(default_factory=dict)  # name_key -> plan key
    group_rows: set[str] = field(default_factory=set)  # emails of rows that are groups
    new_named: dict[str, str] = field(default_factory=dict)  # external id -> name to create
    labels: dict[str, str] = field(default_factory=dict)  # address -> name written for it

    def of(self, row: SheetRow) -> set[str]:
        """The plan keys of the groups this row is a member of."""
        keys = {self.by_address[g] for g in row.groups if g in self.by_address}
        keys.update(self.by_name[k] for k in map(name_key, row.group_names) if k in self.by_name)
        keys.discard(row.email)  # refused as self-membership; never an edge
        return keys

    def all_keys(self) -> set[str]:
        return set(self.by_address.values()) | set(self.by_name.values())


Refuse = Callable[[SheetRow, str, str], None]


class GroupResolver:
    def __init__(
        self,
        state: MirrorState,
        columns: Columns,
        *,
        refuse: Refuse,
        domain_ok: Callable[[str], bool],
    ) -> None:
        self.state = state
        self.columns = columns
        self.refuse = refuse
        self.domain_ok = domain_ok

    def resolve(self, good: list[SheetRow]) -> GroupTargets:
        targets = GroupTargets()
        self._addresses(good, targets)
        if any(r.group_names for r in good):
            self._names(good, targets)
        return targets

    def _addresses(self, good: list[SheetRow], targets: GroupTargets) -> None:
        named = {g for r in good for g in r.groups}
        by_address = {a: r for r in good for a in (r.email, *r.aliases) if a in named}
        accepted = self.state.accepted_domains
        for row in good:
            for address, name in row.group_labels:
                targets.labels.setdefault(address, name)
            for address in row.groups:
                target = by_address.get(address)
                if target is not None:
                    if target.kind not in (RecipientKind.USER, _GROUP):
                        self.refuse(
                            target,
                            self.columns.kind,
                            f"{target.email} is named as a group on row {row.row} but its kind "
                            f"is {target.kind.value}; set its kind to group",
                        )
                        continue
                    targets.by_address[address] = target.email
                    targets.group_rows.add(target.email)
                    continue
                if address.rpartition("@")[2] not in accepted and not self.domain_ok(address):
                    domain = domain_of(address)
                    self.refuse(
                        row,
                        self.columns.groups,
                        f"group {address}: {domain} is not an accepted domain; add it first "
                        f"(roster domains add {domain}) or import with --add-domains",
                    )
                    continue
                key = self._stored_group(row, address)
                if key is not None:
                    targets.by_address[address] = key

    def _stored_group(self, row: SheetRow, address: str) -> str | None:
        """The plan key of the tenant's object with this address, or the address for a new
        group; None (and a row error) when that object is not a group."""
        owner = self.state.owners.get(address)
        if owner is None:
            return address  # a new bare group
        if owner.kind != _GROUP.value:
            where = "imported earlier" if owner.connector_id == self.state.connector_id else ""
            self.refuse(
                row,
                self.columns.groups,
                f"{address} is a {owner.kind} ({owner.label}{', ' + where if where else ''}), "
                "not a group",
            )
            return None
        if owner.connector_id == self.state.connector_id:
            return owner.external_id
        return foreign_key(owner.recipient_id)

    def _names(self, good: list[SheetRow], targets: GroupTargets) -> None:
        candidates: dict[str, dict[str, str]] = {}  # name_key -> plan key -> label

        def add(name: str | None, key: str, label: str) -> None:
            if name:
                candidates.setdefault(name_key(name), {}).setdefault(key, label)

        in_file = {r.email for r in good}
        wanted = {name_key(n) for r in good for n in r.group_names}
        for key_of_name in wanted:
            for group in self.state.groups_by_name.get(key_of_name, ()):
                if group.key not in in_file:  # a row of the file says its name now
                    add(key_of_name, group.key, group.label)
        for row in good:
            if row.kind is _GROUP or row.email in targets.group_rows:
                add(
                    row.display_name, row.email, f"{row.display_name} <{row.email}> (row {row.row})"
                )
        for address, name in targets.labels.items():
            key = targets.by_address.get(address)
            if key is not None:
                add(name, key, f"{name} <{address}>")
        for row in good:
            for name in row.group_names:
                self._name(row, name, candidates.get(name_key(name), {}), targets)

    def _name(self, row: SheetRow, name: str, found: dict[str, str], targets: GroupTargets) -> None:
        key_of_name = name_key(name)
        if len(found) > 1:
            listed = "; ".join(sorted(found.values()))
            self.refuse(
                row,
                self.columns.groups,
                f"the group name {name!r} is ambiguous: {len(found)} groups are called that "
                f"({listed}); name the group by its address instead",
            )
            return
        if found:
            (key,) = found
        else:
            key = named_group_id(name)
            targets.new_named.setdefault(key, name)
        if key == row.email:
            self.refuse(row, self.columns.groups, f"{row.email} cannot be a member of itself")
            return
        targets.by_name[key_of_name] = key


def groups_by_name(groups: Iterable[tuple[str, NamedGroup]]) -> dict[str, list[NamedGroup]]:
    """Index (display name, group) pairs by `name_key`."""
    out: dict[str, list[NamedGroup]] = {}
    for name, group in groups:
        out.setdefault(name_key(name), []).append(group)
    return out
