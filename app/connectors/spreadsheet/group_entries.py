"""The groups column as people write it: group addresses, `Name <address>`, and plain names.

Entries are separated by `;` or `,` (as in the aliases column), so a group name cannot contain
either; spaces inside a name are fine ("Sales Team"). An entry with an `@` is an address, an
entry `Name <address>` names both, anything else is a group name matched by display name.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

from app.connectors.spreadsheet.cells import CellError, looks_like_formula, parse_address, quote

MAX_NAME_CHARS = 200  # a group name; the stored key is derived from it
NAMED_PREFIX = "name:"  # external id of an address-less group: never an address (no `@`)
_LABELLED = re.compile(r"([^<>]*)<([^<>]*)>")
# Exchange proxyAddresses types that are not mail addresses; such entries are skipped. Any
# other `word:` start is part of a name ("Team: Sales").
_FOREIGN_PROXIES = frozenset({"x500", "x400", "sip", "eum", "spo", "fax", "notes", "gwise"})
_PROXY = re.compile(r"([A-Za-z][A-Za-z0-9]*):")
_HINT = "write a group as its address, as Name <address>, or as a name without @"


class GroupEntries(NamedTuple):
    addresses: tuple[str, ...]  # normalized group addresses, each once
    names: tuple[str, ...]  # plain names, each once (compared by `name_key`)
    labels: tuple[tuple[str, str], ...]  # (address, name) from `Name <address>` entries


NO_GROUPS = GroupEntries((), (), ())


def name_key(name: str) -> str:
    """How names are compared: case-insensitively, runs of spaces counting as one."""
    return " ".join(name.split()).casefold()


def named_group_id(name: str) -> str:
    """The external id of the address-less spreadsheet group called `name`."""
    return NAMED_PREFIX + name_key(name)


def parse_group_entries(value: str) -> GroupEntries:
    """Split and check one groups cell; empty entries (`a;;b`, a trailing `;`) are ignored."""
    if not value:
        return NO_GROUPS
    addresses: dict[str, None] = {}
    names: dict[str, str] = {}
    labels: dict[str, str] = {}
    for piece in value.split(";"):
        if _is_foreign_proxy(piece):  # X500 paths may contain commas
            continue
        for item in piece.split(","):
            entry = item.strip()
            if not entry or _is_foreign_proxy(entry):
                continue
            if "<" in entry or ">" in entry:
                address, name = _labelled(entry)
                addresses.setdefault(address)
                if name:
                    labels.setdefault(address, name)
            elif "@" in entry:
                try:
                    addresses.setdefault(parse_address(entry))
                except CellError as exc:
                    raise CellError(f"{exc}; {_HINT}") from exc
            else:
                name = _checked_name(entry)
                names.setdefault(name_key(name), name)
    return GroupEntries(tuple(addresses), tuple(names.values()), tuple(labels.items()))


def _labelled(entry: str) -> tuple[str, str]:
    match = _LABELLED.fullmatch(entry)
    if match is None:
        raise CellError(f"{quote(entry)} is not a group entry; {_HINT}")
    raw_name, raw_address = match.groups()
    if "@" not in raw_address:
        raise CellError(f"{quote(entry)}: {quote(raw_address.strip())} is not an address; {_HINT}")
    name = raw_name.strip().strip('"').strip()
    return parse_address(raw_address), _checked_name(name) if name else ""


def _checked_name(entry: str) -> str:
    name = " ".join(entry.split())
    if len(name) > MAX_NAME_CHARS:
        raise CellError(
            f"the group name {quote(name)} has {len(name)} characters; the limit is "
            f"{MAX_NAME_CHARS}"
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
        raise CellError(f"the group name {quote(name)} contains a control character")
    if looks_like_formula(name):
        raise CellError(
            f"the group name {quote(name)} is a formula; Roster refuses formulas (they run when "
            "the data is opened in a spreadsheet)"
        )
    return name


def _is_foreign_proxy(item: str) -> bool:
    match = _PROXY.match(item.strip())
    return match is not None and match.group(1).casefold() in _FOREIGN_PROXIES
