"""One domain, many spellings, one key: the property behind "NFC, NFD and punycode spellings of
one domain give one verdict". The expected key is computed without the `idna` package (stdlib
Punycode of the NFC, lower-case label), which is also what the hand encoder before UTS #46 gave
for such input: keys stored by earlier versions for NFC input stay valid, no data migration."""

from __future__ import annotations

import unicodedata

from hypothesis import event, given, settings
from hypothesis import strategies as st

from app.directory.addresses import normalize, normalize_domain
from app.errors import Malformed

from .test_addresses import fullwidth

# Lower-case letters IDNA 2008 allows (left-to-right scripts only: the Bidi rule is not what
# this property is about), chosen so upper() and back is the identity: no sharp s, final
# sigma, dotless i or micro sign.
_LETTERS = (
    "abcdefghijklmnopqrstuvwxyz0123456789"
    "àáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿ"  # Latin-1
    "ăąćčďęěğłńňőœřśşšţťůűźżžșțǎǐǒǔ"  # Latin Extended
    "ạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ"  # Vietnamese: stacked marks in NFD
    "αβγδεζηθικλμνξοπρστυφχψωάέήίόύώϊϋΐΰ"  # Greek, with tonos and dialytika
    "абвгдеёжзийклмнопрстуфхцчшщъыьэюяєіїґў"  # Cyrillic
    "日本語中文漢字東京大阪한국어서울ひらがなカタカナ"  # no case; Hangul decomposes in NFD
)
_DOTS = (".", "\u3002", "\uff0e", "\uff61")  # full stop, ideographic, full-width, half-width

labels = st.text(st.sampled_from(_LETTERS), min_size=1, max_size=12)
domains = st.lists(labels, min_size=1, max_size=3).map(lambda parts: [*parts, "example"])


def expected_key(parts: list[str]) -> str:
    """The key by hand: ASCII labels as they are, others `xn--` + stdlib Punycode of the NFC."""
    return ".".join(
        part if part.isascii() else "xn--" + part.encode("punycode").decode("ascii")
        for part in parts
    )


def spell(label: str, how: str) -> str:
    if how == "NFD":
        return unicodedata.normalize("NFD", label)
    if how == "upper":
        return label.upper()
    if how == "upper NFD":
        return unicodedata.normalize("NFD", label.upper())
    if how == "full-width":
        return fullwidth(label)
    if how == "A-label":
        return label if label.isascii() else "xn--" + label.encode("punycode").decode("ascii")
    if how == "upper A-label":
        return spell(label, "A-label").upper()
    return label  # NFC, as typed on most keyboards


SPELLINGS = ("NFC", "NFD", "upper", "upper NFD", "full-width", "A-label", "upper A-label")


@given(domains, st.data())
@settings(max_examples=500)
def test_equivalent_spellings_of_a_domain_give_one_key(
    parts: list[str], data: st.DataObject
) -> None:
    key = expected_key(parts)
    assert normalize_domain(".".join(parts)) == key
    ways = data.draw(st.lists(st.sampled_from(SPELLINGS), min_size=len(parts), max_size=len(parts)))
    dots = data.draw(st.lists(st.sampled_from(_DOTS), min_size=len(parts), max_size=len(parts)))
    spelled = "".join(spell(p, w) + d for p, w, d in zip(parts, ways, dots, strict=True))
    spelled = spelled[:-1] if data.draw(st.booleans()) else spelled  # a trailing dot or not
    for way in ways:
        event(way)
    assert normalize_domain(spelled) == key, spelled
    assert normalize(f"Info@{spelled}") == f"info@{key}", spelled


@given(domains, domains)
@settings(max_examples=500)
def test_different_domains_keep_different_keys(a: list[str], b: list[str]) -> None:
    same = [x.lower() for x in a] == [y.lower() for y in b]
    event("same domain" if same else "different domains")
    assert (normalize_domain(".".join(a)) == normalize_domain(".".join(b))) == same


def test_near_misses_stay_distinct() -> None:
    spellings = ("bücher", "bucher", "buecher", "bùcher", "faß", "fass", "ευρώ", "ευρω")
    keys = {normalize_domain(f"{name}.example") for name in spellings}
    assert len(keys) == len(spellings)


@given(labels)
@settings(max_examples=300)
def test_a_label_of_a_non_nfc_spelling_is_malformed(label: str) -> None:
    """Punycode of the NFD form is another name to DNS; IDNA 2008 refuses it, and so do we."""
    nfd = unicodedata.normalize("NFD", label)
    if nfd == label:
        event("NFC is NFD")
        return
    fake = "xn--" + nfd.encode("punycode").decode("ascii")
    try:
        normalize_domain(f"{fake}.example")
    except Malformed:
        return
    raise AssertionError(f"{fake} was accepted")
