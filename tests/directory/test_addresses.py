from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.directory.addresses import normalize, normalize_domain, subaddress_base
from app.errors import Malformed


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Alice@Contoso.COM", "alice@contoso.com"),
        ("  bob@contoso.com\t", "bob@contoso.com"),
        ("info@Bücher.Example", "info@xn--bcher-kva.example"),
        ("info@xn--bcher-kva.example", "info@xn--bcher-kva.example"),
        ("trailing@dot.example.", "trailing@dot.example"),
        ("o'brien+tag@contoso.com", "o'brien+tag@contoso.com"),
    ],
)
def test_normalization_folds_case_idna_and_whitespace(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("no-at-sign", "no @"),
        ("@contoso.com", "empty local part"),
        ("alice@", "empty domain"),
        ("al ice@contoso.com", "whitespace"),
        ("alice@cont\x00oso.com", "control"),
        ("a" * 65 + "@contoso.com", "64 octets"),
        ("a" * 64 + "@" + ".".join(["b" * 60] * 4) + ".com", "254"),
        ("alice@contoso..com", "empty label"),
        ("alice@[127.0.0.1]", "literal"),
        ("alice@-bad.com", "hyphen"),
    ],
)
def test_malformed_addresses_are_refused_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(Malformed, match=reason):
        normalize(raw)


@given(st.text(max_size=300))
@settings(max_examples=2000)
def test_any_input_gives_a_value_or_malformed(raw: str) -> None:
    try:
        value = normalize(raw)
    except Malformed:
        return
    assert value == value.strip()
    assert "@" in value
    assert len(value.encode()) <= 254


_local = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Cc", "Zl", "Zp")),
    min_size=1,
    max_size=40,
)
_label = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Cc", "Zl", "Zp")),
    min_size=1,
    max_size=20,
)


@given(_local, st.lists(_label, min_size=1, max_size=4))
@settings(max_examples=2000)
def test_normalization_is_idempotent(local: str, labels: list[str]) -> None:
    raw = f"{local}@{'.'.join(labels)}"
    try:
        once = normalize(raw)
    except Malformed:
        return
    assert normalize(once) == once


def test_subaddress_base_uses_the_first_delimiter() -> None:
    assert subaddress_base("alice+news+x@contoso.com", "+") == "alice@contoso.com"
    assert subaddress_base("alice-news@contoso.com", "+-") == "alice@contoso.com"
    assert subaddress_base("alice@contoso.com", "+") is None
    assert subaddress_base("+news@contoso.com", "+") is None
    assert subaddress_base("alice+news@contoso.com", "") is None


def test_domain_normalization() -> None:
    assert normalize_domain(" Bücher.Example. ") == "xn--bcher-kva.example"
    with pytest.raises(Malformed):
        normalize_domain("not a domain")
