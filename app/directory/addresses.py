"""Address normalization and subaddressing (docs/contracts.md §3): the one place an address or a
domain becomes a key.

Every path that stores or compares an address or a domain (domains added by hand, by a sheet or
by a directory, every connector's addresses, every lookup protocol) goes through `normalize` or
`normalize_domain`, so one mailbox has one key however it was typed.

Postfix lower-cases socketmap and tcp_table keys but sends the policy service the recipient as
typed, and never strips `+tag` for these tables: Roster does both itself.

Domains: ASCII labels are lower-cased and checked as host-name labels (STD3's letters, digits
and `-`, plus `_`, which Roster has always accepted); an all-ASCII domain never reaches `idna`
unless a label starts with `xn--`. Anything else takes UTS #46 processing (nontransitional, the
only kind the `idna` package implements: `faß.de` stays `faß.de`) and IDNA 2008's label rules,
so NFC and NFD spellings, full-width letters and dots, upper case and the A-label
(`xn--bcher-kva.example`) all give one key. A-labels are checked too: one that is not the
canonical Punycode of a valid U-label (the Punycode of an NFD spelling, say) is malformed.
Symbols and emoji (`♥.example`) break IDNA 2008's rules but are registered under some top-level
domains and were accepted by IDNA 2003: such a label, if UTS #46 leaves it unchanged and it is in
NFC, is encoded with plain Punycode rather than refused, so a stored domain of that kind never
turns its mail into a wrong reject. Keys are cached per domain as typed.

Local parts: lower-cased, and a non-ASCII local part (SMTPUTF8) is put in NFC, so precomposed
and decomposed spellings of one mailbox match; nothing else is mapped (full-width letters in a
local part stay as typed: the receiving system decides what they mean).
"""

from __future__ import annotations

import functools
import unicodedata

import idna

from app.errors import Malformed

MAX_ADDRESS_OCTETS = 254
MAX_LOCAL_OCTETS = 64
MAX_DOMAIN_OCTETS = 253
MAX_LABEL_OCTETS = 63
# Zero-width (non-)joiners are format characters, refused like control characters except in a
# domain, where IDNA 2008 allows them in context (Persian, Indic scripts) and checks that context.
_JOINERS = frozenset("\u200c\u200d")
_SYMBOLS = frozenset({"So", "Sm", "Sc", "Sk"})  # Unicode symbol categories (emoji are "So")
_SYMBOL = "symbol"


def normalize(address: str) -> str:
    """Trim, lower-case, NFC the local part and IDNA-encode the domain; raise Malformed for
    anything that can't be mail.

    Idempotent: normalize(normalize(a)) == normalize(a).
    """
    if not isinstance(address, str):
        raise Malformed("address must be a string")
    value = address.strip()
    if not value:
        raise Malformed("address is empty")
    ascii_input = value.isascii()
    if ascii_input:  # the common case, checked without a Python-level loop
        if " " in value or not value.isprintable():
            raise Malformed("address contains whitespace or control characters")
    elif any((ch.isspace() or not ch.isprintable()) and ch not in _JOINERS for ch in value):
        raise Malformed("address contains whitespace or control characters")
    local, at, domain = value.rpartition("@")
    if not at:
        raise Malformed("address has no @")
    if not ascii_input and not _JOINERS.isdisjoint(local):
        raise Malformed("address contains whitespace or control characters")
    if not local:
        raise Malformed("address has an empty local part")
    if not domain:
        raise Malformed("address has an empty domain")
    if domain.startswith("[") or domain.endswith("]"):
        raise Malformed("address literals are not mailbox addresses")
    local = local.lower() if ascii_input else _unicode_local(local)
    domain = _encode_domain(domain)
    result = f"{local}@{domain}"
    ascii_only = result.isascii()
    if (len(local) if ascii_only else len(local.encode("utf-8"))) > MAX_LOCAL_OCTETS:
        raise Malformed(f"local part is longer than {MAX_LOCAL_OCTETS} octets")
    if (len(result) if ascii_only else len(result.encode("utf-8"))) > MAX_ADDRESS_OCTETS:
        raise Malformed(f"address is longer than {MAX_ADDRESS_OCTETS} octets")
    return result


def normalize_domain(domain: str) -> str:
    """A domain as typed (`roster domains add`, the API, a directory's list) -> its key, the
    same one `normalize` gives an address in that domain."""
    value = domain.strip()
    if not value or any(
        (ch.isspace() or not ch.isprintable() or ch in "@[]") and ch not in _JOINERS for ch in value
    ):
        raise Malformed(f"not a domain name: {domain!r}")
    return _encode_domain(value)


def _unicode_local(local: str) -> str:
    """NFC after lower-casing (lower() can decompose, as `İ` -> `i̇` does), NFC again so the
    result is a fixed point."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", local).lower())


@functools.lru_cache(maxsize=4096)
def _encode_domain(domain: str) -> str:
    """The domain as typed (trimmed) -> ASCII key; cached, as lookups repeat a few domains."""
    if domain.isascii():
        value = domain.lower()
    else:
        try:
            # STD3's host-name rule is applied below, label by label, with the ASCII labels.
            value = idna.uts46_remap(domain, std3_rules=False)
        except UnicodeError as exc:  # idna.IDNAError is a UnicodeError
            raise Malformed(f"domain {domain!r} is not a valid domain name: {exc}") from exc
    value = value.rstrip(".")
    if not value:
        raise Malformed("address has an empty domain")
    encoded: list[str] = []
    for label in value.split("."):
        if not label:
            raise Malformed("domain has an empty label")
        plain = label.isascii() and not label.startswith("xn--")
        ascii_label = label if plain else _a_label(label)
        if len(ascii_label) > MAX_LABEL_OCTETS:
            raise Malformed(f"domain label is longer than {MAX_LABEL_OCTETS} octets")
        if not all(ch.isalnum() or ch in "-_" for ch in ascii_label):
            raise Malformed(f"domain label {label!r} has characters not allowed in a host name")
        if ascii_label.startswith("-") or ascii_label.endswith("-"):
            raise Malformed(f"domain label {label!r} starts or ends with a hyphen")
        encoded.append(ascii_label)
    result = ".".join(encoded)
    if len(result) > MAX_DOMAIN_OCTETS:
        raise Malformed(f"domain is longer than {MAX_DOMAIN_OCTETS} octets")
    return result


def _a_label(label: str) -> str:
    """A U-label (already UTS #46-mapped) or an A-label -> the A-label, by IDNA 2008's rules."""
    if label.isascii() and len(label) > MAX_LABEL_OCTETS:
        raise Malformed(f"domain label is longer than {MAX_LABEL_OCTETS} octets")
    try:
        return idna.alabel(label).decode("ascii")
    except UnicodeError as exc:
        lenient = _idna2003_label(label)
        if lenient is None:
            raise Malformed(f"domain label {label!r} is not a valid IDNA label: {exc}") from exc
        return lenient


def _idna2003_label(label: str) -> str | None:
    """A label IDNA 2008 refuses but UTS #46 keeps as it is (symbols, emoji) -> plain Punycode;
    None for anything else (a non-canonical A-label, an unmapped or unnormalized spelling)."""
    if label.startswith("xn--"):
        try:
            u_label = label[4:].encode("ascii").decode("punycode")
        except UnicodeError:
            return None
    else:
        u_label = label
    if u_label.isascii() or not unicodedata.is_normalized("NFC", u_label):
        return None
    kinds = [_SYMBOL if unicodedata.category(ch) in _SYMBOLS else ch.isalnum() for ch in u_label]
    if _SYMBOL not in kinds or not all(
        k is _SYMBOL or k or ch == "-" for k, ch in zip(kinds, u_label, strict=True)
    ):
        return None  # only letters, digits, hyphens and at least one symbol; no `_`, no joiners
    if unicodedata.category(u_label[0]).startswith("M"):  # a label never starts with a mark
        return None
    try:
        if idna.uts46_remap(u_label, std3_rules=False) != u_label:
            return None
    except UnicodeError:
        return None
    a_label = "xn--" + u_label.encode("punycode").decode("ascii")
    if label.startswith("xn--") and a_label != label:
        return None
    return a_label


def domain_of(normalized: str) -> str:
    return normalized.rpartition("@")[2]


def subaddress_base(normalized: str, delimiter: str) -> str | None:
    """`alice+news@x` -> `alice@x` (first delimiter wins, as Postfix does); None when not tagged."""
    if not delimiter:
        return None
    local, _, domain = normalized.rpartition("@")
    if len(delimiter) == 1:
        cut = local.find(delimiter)
    else:
        cut = min((p for p in (local.find(ch) for ch in delimiter) if p > 0), default=-1)
    if cut <= 0:
        return None
    return f"{local[:cut]}@{domain}"
