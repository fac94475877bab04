from __future__ import annotations

import unicodedata

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from app.directory.addresses import normalize, normalize_domain, subaddress_base
from app.errors import Malformed


def fullwidth(text: str) -> str:
    """The full-width form (U+FF01..U+FF5E) of printable ASCII, as East Asian keyboards type it."""
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in text)


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
    assert normalize(value) == value


# Valid addresses, built to be valid: dot-atom local parts (RFC 5322 atext plus letters and
# digits of any script, for SMTPUTF8) and host-name domains whose labels may be Unicode.
_ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"
_LOCAL_CHARS = st.one_of(
    st.sampled_from(_ATEXT),
    st.characters(categories=("Ll", "Lu", "Lo", "Nd")),
)
_atom = st.one_of(
    st.text(st.sampled_from(_ATEXT), min_size=1, max_size=8),
    st.text(_LOCAL_CHARS, min_size=1, max_size=5),
)
# Within 64 octets even when every character takes 4 UTF-8 octets (or lower-casing adds one).
valid_locals = st.lists(_atom, min_size=1, max_size=3).map(".".join)
# Letters IDNA 2008 allows in a label (lower-case, left-to-right scripts), and their capitals.
_U_LETTERS = "äöüéèçñåøæœłșțğışžčćđабвгдежзийклмнопрстуфхцчшщыэюяαβγδεζηθικλμνξοπρστυφχψω"
_LABEL_CHARS = st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789" + _U_LETTERS)
valid_labels = st.text(_LABEL_CHARS, min_size=1, max_size=10).map(
    lambda label: label if label.isascii() else unicodedata.normalize("NFC", label)
)
valid_domains = st.builds(
    lambda labels, tld: ".".join([*labels, tld]),
    st.lists(valid_labels, min_size=1, max_size=3),
    st.sampled_from(["com", "example", "de", "xn--p1ai", "co.uk"]),
)
valid_addresses = st.builds(lambda local, domain: f"{local}@{domain}", valid_locals, valid_domains)


@given(valid_addresses)
@settings(max_examples=1000)
def test_valid_addresses_normalize_to_a_fixed_point(raw: str) -> None:
    once = normalize(raw)  # every generated address is valid: Malformed here fails the test
    local, _, domain = once.rpartition("@")
    event("non-ASCII local part" if not local.isascii() else "ASCII local part")
    event("IDN domain" if "xn--" in domain.replace("xn--p1ai", "") else "ASCII domain")
    assert normalize(once) == once
    assert domain.isascii() and domain == domain.lower()
    assert local == unicodedata.normalize("NFC", local)
    assert normalize(unicodedata.normalize("NFD", raw)) == once
    assert normalize(f"  {raw.upper() if raw.isascii() else raw}\t") == once


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


def test_a_symbol_domain_that_idna_2008_refuses_keeps_its_idna_2003_key() -> None:
    # ♥.example: registered under some TLDs; refusing it would bounce mail for a stored domain
    assert normalize_domain("♥.example") == "xn--g6h.example"
    assert normalize_domain("xn--g6h.example") == "xn--g6h.example"
    assert normalize("Love@♥.Example") == "love@xn--g6h.example"


@pytest.mark.parametrize(
    "spelling",
    [
        "bücher.example",  # NFC, as most keyboards type it
        "bu\u0308cher.example",  # NFD, as macOS file names and some paste buffers hold it
        "BÜCHER.EXAMPLE",
        fullwidth("b") + "ü" + fullwidth("cher.example"),  # full-width letters and full stop
        "bücher。example",  # ideographic full stop
        "xn--bcher-kva.example",
        "XN--BCHER-KVA.Example.",
    ],
)
def test_every_spelling_of_an_idn_domain_gives_one_key(spelling: str) -> None:
    assert normalize_domain(spelling) == "xn--bcher-kva.example"
    assert normalize(f"Info@{spelling}") == "info@xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("domain", "reason"),
    [
        ("xn--bucher-xyd.example", "not a valid IDNA label"),  # Punycode of the NFD spelling
        ("xn--.example", "not a valid IDNA label"),
        ("xn--zz-.example", "not a valid IDNA label"),
        ("bü_cher.example", "not a valid IDNA label"),
        ("bü\u200dcher.example", "not a valid IDNA label"),  # a joiner out of context
        ("\u200d.example", "not a valid IDNA label"),
        ("bücher\u2488.example", "not a valid domain name"),  # ⒈ maps to "1." (a dot)
        (fullwidth("contoso!") + ".example", "not allowed in a host name"),
        ("bücher" + fullwidth("!") + ".example", "not a valid IDNA label"),
        ("bücher..example", "empty label"),
        ("bücher\u00ad.example", "control characters"),  # a soft hyphen is invisible
    ],
)
def test_invalid_idna_is_malformed_like_any_bad_input(domain: str, reason: str) -> None:
    with pytest.raises(Malformed, match=reason):
        normalize(f"info@{domain}")
    with pytest.raises(Malformed):
        normalize_domain(domain)


def test_joiners_are_kept_where_idna_allows_them() -> None:
    # ZWNJ in Persian and ZWJ after a virama are part of the name; elsewhere they are refused.
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645.example"
    assert normalize(f"info@{persian}") == "info@xn--mgbn2ecje63gr19l.example"
    assert normalize_domain("\u0915\u094d\u200d\u0937.example") == "xn--11b2ezcw70k.example"
    with pytest.raises(Malformed, match="control characters"):
        normalize("in\u200dfo@contoso.com")


def test_sharp_s_stays_itself_nontransitionally() -> None:
    # UTS #46 nontransitional processing (IDNA 2008): faß.de and fass.de are two domains.
    assert normalize_domain("faß.de") == "xn--fa-hia.de"
    assert normalize_domain("FASS.de") == "fass.de"


def test_local_parts_are_nfc_and_lower_case_but_otherwise_as_typed() -> None:
    nfc = normalize("Jürgen@contoso.com")
    assert nfc == "jürgen@contoso.com"
    assert normalize("Ju\u0308rgen@contoso.com") == nfc
    assert normalize("JÜRGEN@contoso.com") == nfc
    # Full-width letters in a local part are not mapped: the mailbox's own system decides.
    wide = fullwidth("juergen")
    assert normalize(f"{wide}@contoso.com") == f"{wide}@contoso.com"
