"""`roster domains add` and `roster lookup` with an IDN domain, as a script would run them."""

from __future__ import annotations

import unicodedata
from pathlib import Path

from tests.test_cli import roster

NFC = "bücher.example"
NFD = unicodedata.normalize("NFD", NFC)
KEY = "xn--bcher-kva.example"


def test_a_domain_added_in_two_spellings_is_one_and_answers_every_spelling(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'roster.db'}"
    roster(db, "db", "upgrade")
    roster(db, "domains", "add", NFC)
    roster(db, "domains", "add", NFD.upper())
    listed = roster(db, "domains", "list").stdout
    assert listed.count(KEY) == 1, listed
    roster(db, "users", "add", f"Jürgen@{NFD}")
    assert roster(db, "lookup", f"jürgen@{KEY}", f"JÜRGEN@{NFC}").returncode == 0
    unknown = roster(db, "lookup", f"nobody@{NFD}", check=False)
    assert unknown.returncode == 1
    assert "unknown_recipient" in unknown.stdout + unknown.stderr
    fake = roster(db, "lookup", "jürgen@xn--bucher-xyd.example", check=False)
    assert fake.returncode == 1
    assert "malformed" in fake.stdout
