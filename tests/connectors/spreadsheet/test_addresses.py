"""The fast path for addresses of an already checked domain accepts and refuses exactly what the
full check does."""

from __future__ import annotations

import pytest

from app.connectors.spreadsheet import addresses
from app.connectors.spreadsheet.addresses import AddressError, normalize_address

SAMPLES = [
    "Alice@Example.COM",
    "bob.smith+news@example.com",
    "o'brien@example.com",
    "a..b@example.com",
    ".a@example.com",
    "a.@example.com",
    "a@b@example.com",
    "x" * 64 + "@example.com",
    "x" * 65 + "@example.com",
    "a@" + "d" * 250 + ".com",
    "jörg@Bücher.de",
    "j@bücher.de",
    "a@localhost",
    "a@example.com.",
    "a b@example.com",
]


def _outcome(address: str) -> str:
    try:
        return normalize_address(address)
    except AddressError as exc:
        return f"error: {exc}"


@pytest.mark.parametrize("address", SAMPLES)
def test_a_known_domain_gives_the_same_answer_as_the_full_check(
    address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(addresses, "_checked_domains", {})
    first = _outcome(address)  # nothing known yet: the full check
    for warm in ("w@Example.COM", "w@example.com", "w@Bücher.de", "w@" + "d" * 250 + ".com"):
        _outcome(warm)
    assert _outcome(address) == first
