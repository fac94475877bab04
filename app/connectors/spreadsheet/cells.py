"""Cell values to typed fields; each parser raises CellError with a reason for the row report."""

from __future__ import annotations

import re

from app.connectors.base import RecipientKind
from app.connectors.spreadsheet.addresses import AddressError, normalize_address


class CellError(ValueError):
    """`str(error)` is the reason shown next to the row and column."""


class FormulaCell(str):
    """Text of an XLSX cell that holds a formula; refused whatever its cached value."""

    __slots__ = ()


_TRUE = frozenset({"true", "yes", "y", "1", "enabled", "active"})
_FALSE = frozenset({"false", "no", "n", "0", "disabled", "inactive"})

# Keys are the value lower-cased with spaces, dashes and underscores removed. Exchange's
# RecipientTypeDetails values are accepted so a Get-Recipient export imports as it is.
_KINDS: dict[str, RecipientKind] = {
    **dict.fromkeys(("user", "usermailbox", "mailuser", "mailbox"), RecipientKind.USER),
    **dict.fromkeys(("shared", "sharedmailbox"), RecipientKind.SHARED_MAILBOX),
    **dict.fromkeys(("room", "roommailbox"), RecipientKind.ROOM),
    **dict.fromkeys(("equipment", "equipmentmailbox"), RecipientKind.EQUIPMENT),
    **dict.fromkeys(
        (
            "group",
            "distributionlist",
            "distributiongroup",
            "dynamicdistributiongroup",
            "dynamicgroup",
            "securitygroup",
            "mailuniversaldistributiongroup",
            "mailuniversalsecuritygroup",
            "groupmailbox",
            "microsoft365group",
            "m365group",
            "unifiedgroup",
        ),
        RecipientKind.GROUP,
    ),
    **dict.fromkeys(("contact", "mailcontact", "externalcontact"), RecipientKind.CONTACT),
    **dict.fromkeys(("publicfolder", "mailpublicfolder"), RecipientKind.PUBLIC_FOLDER),
}
KIND_NAMES = (
    "user, shared mailbox, room, equipment, group, distribution list, "
    "dynamic distribution group, contact, public folder"
)

# A number or a phone number ("+44 20 7946 0000", "-5") is data, not a formula.
_NUMBER_LIKE = re.compile(r"[+-][\d\s().,/-]*")
_AT_FUNCTION = re.compile(r"@[A-Za-z_][\w.]*\(")
_PREFIX = re.compile(r"([A-Za-z][A-Za-z0-9]*):(.*)", re.DOTALL)


def quote(value: str, limit: int = 60) -> str:
    """The operator's value, shortened, for a message."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def looks_like_formula(value: str) -> bool:
    """CSV injection: text a spreadsheet program would run as a formula when the data is opened.

    Ref: https://owasp.org/www-community/attacks/CSV_Injection
    """
    if isinstance(value, FormulaCell):
        return True
    if not value:
        return False
    first = value[0]
    if first == "=":
        return len(value) > 1
    if first in "+-":
        return _NUMBER_LIKE.fullmatch(value) is None
    if first == "@":
        return _AT_FUNCTION.match(value) is not None
    return False


def parse_enabled(value: str) -> bool:
    key = value.strip().casefold()
    if not key or key in _TRUE:
        return True
    if key in _FALSE:
        return False
    raise CellError(
        f"{quote(value)} is not a valid value; use true/false, yes/no, 1/0, enabled/disabled "
        "or active/inactive (empty means enabled)"
    )


def parse_kind(value: str) -> RecipientKind:
    kind = _KINDS.get(value)  # the usual spelling, without a regex
    if kind is not None:
        return kind
    key = re.sub(r"[\s_-]+", "", value.casefold())
    if not key:
        return RecipientKind.USER
    kind = _KINDS.get(key)
    if kind is None:
        raise CellError(f"{quote(value)} is not a recipient kind; use one of: {KIND_NAMES}")
    return kind


def parse_address(value: str) -> str:
    value = address = value.strip()
    match = _PREFIX.fullmatch(address) if ":" in address else None
    if match and match.group(1).casefold() == "smtp":
        address = match.group(2)
    try:
        return normalize_address(address)
    except AddressError as exc:
        raise CellError(f"{quote(value)} is not a valid address: {exc}") from exc


def parse_address_list(value: str) -> tuple[str, ...]:
    """Addresses separated by `;` or `,`; `smtp:` prefixes stripped, X500:/SIP:/… entries ignored.

    Exchange proxyAddresses use `SMTP:` for the primary and `smtp:` for the others; other types
    (X500, SIP, EUM, X400) are not mail addresses.
    """
    if not value:
        return ()
    if ":" not in value:  # no proxy prefixes: the common, fast case
        items = value.replace(",", ";").split(";")
        return tuple(dict.fromkeys(parse_address(i) for i in items if i.strip()))
    addresses: list[str] = []
    for piece in value.split(";"):
        if _is_foreign_proxy(piece):  # may itself contain commas (X500 paths)
            continue
        items = piece.split(",")
        for item in items:
            if not item.strip() or (len(items) > 1 and _is_foreign_proxy(item)):
                continue  # (a piece without commas was checked just above)
            address = parse_address(item)
            if address not in addresses:
                addresses.append(address)
    return tuple(addresses)


def _is_foreign_proxy(item: str) -> bool:
    if ":" not in item:
        return False
    match = _PREFIX.fullmatch(item.strip())
    return match is not None and match.group(1).casefold() != "smtp"


def parse_text_list(value: str) -> tuple[str, ...]:
    if not value:
        return ()
    items: list[str] = []
    for item in re.split(r"[;,]", value):
        text = item.strip()
        if text and text not in items:
            items.append(text)
    return tuple(items)
