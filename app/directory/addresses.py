"""Address normalization and subaddressing (docs/contracts.md §3).

Postfix lower-cases socketmap and tcp_table keys but sends the policy service the recipient as
typed, and never strips `+tag` for these tables: Roster does both itself.
"""

from __future__ import annotations

import functools

from app.errors import Malformed

MAX_ADDRESS_OCTETS = 254
MAX_LOCAL_OCTETS = 64


def normalize(address: str) -> str:
    """Trim, lower-case and IDNA-encode the domain; raise Malformed for anything that can't be mail.

    Idempotent: normalize(normalize(a)) == normalize(a).
    """
    if not isinstance(address, str):
        raise Malformed("address must be a string")
    value = address.strip()
    if not value:
        raise Malformed("address is empty")
    if value.isascii():  # the common case, checked without a Python-level loop
        if " " in value or not value.isprintable():
            raise Malformed("address contains whitespace or control characters")
    elif any(ch.isspace() or not ch.isprintable() for ch in value):
        raise Malformed("address contains whitespace or control characters")
    local, at, domain = value.rpartition("@")
    if not at:
        raise Malformed("address has no @")
    if not local:
        raise Malformed("address has an empty local part")
    if not domain:
        raise Malformed("address has an empty domain")
    if domain.startswith("[") or domain.endswith("]"):
        raise Malformed("address literals are not mailbox addresses")
    local = local.lower()
    domain = _encode_domain(domain.lower().rstrip("."))
    result = f"{local}@{domain}"
    ascii_only = result.isascii()
    if (len(local) if ascii_only else len(local.encode("utf-8"))) > MAX_LOCAL_OCTETS:
        raise Malformed(f"local part is longer than {MAX_LOCAL_OCTETS} octets")
    if (len(result) if ascii_only else len(result.encode("utf-8"))) > MAX_ADDRESS_OCTETS:
        raise Malformed(f"address is longer than {MAX_ADDRESS_OCTETS} octets")
    return result


def normalize_domain(domain: str) -> str:
    value = domain.strip().lower().rstrip(".")
    if not value or any(ch.isspace() or ord(ch) < 0x20 or ch in "@[]" for ch in value):
        raise Malformed(f"not a domain name: {domain!r}")
    return _encode_domain(value)


@functools.lru_cache(maxsize=4096)
def _encode_domain(domain: str) -> str:
    if not domain:
        raise Malformed("address has an empty domain")
    labels = domain.split(".")
    encoded = []
    for label in labels:
        if not label:
            raise Malformed("domain has an empty label")
        if label.isascii():
            ascii_label = label
        else:
            try:
                ascii_label = "xn--" + label.encode("punycode").decode("ascii")
            except UnicodeError as exc:
                raise Malformed(f"domain label {label!r} cannot be IDNA-encoded") from exc
        if len(ascii_label) > 63:
            raise Malformed("domain label is longer than 63 octets")
        if not all(ch.isalnum() or ch in "-_" for ch in ascii_label):
            raise Malformed(f"domain label {label!r} has characters not allowed in a host name")
        if ascii_label.startswith("-") or ascii_label.endswith("-"):
            raise Malformed(f"domain label {label!r} starts or ends with a hyphen")
        encoded.append(ascii_label)
    result = ".".join(encoded)
    if len(result) > 253:
        raise Malformed("domain is longer than 253 octets")
    return result


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
