"""Reading good files: every CSV dialect operators produce, header synonyms, field parsing."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from app.connectors.base import RecipientKind
from app.connectors.spreadsheet import SheetRow, open_spreadsheet, read_spreadsheet
from app.directory.addresses import normalize
from tests.connectors.spreadsheet.files import csv_bytes

HEADER = ["email", "display name", "aliases", "enabled", "kind", "groups", "department"]
ROWS = [
    HEADER,
    ["Alice@Example.com", "Alice", "alice.s@example.com;a@example.com", "yes", "user", "", "Sales"],
    ["room1@example.com", "Room 1", "", "", "room", "", ""],
]


def read(data: bytes, filename: str = "people.csv") -> list[SheetRow]:
    result = read_spreadsheet(data, filename=filename)
    assert result.errors == []
    return result.rows


def test_plain_utf8_comma_csv_is_read() -> None:
    rows = read(csv_bytes(ROWS))
    assert [r.email for r in rows] == ["alice@example.com", "room1@example.com"]
    alice = rows[0]
    assert alice.row == 2
    assert alice.display_name == "Alice"
    assert alice.aliases == ("alice.s@example.com", "a@example.com")
    assert alice.enabled is True
    assert alice.kind is RecipientKind.USER
    assert alice.attributes == {"department": "Sales"}
    assert rows[1].kind is RecipientKind.ROOM
    assert rows[1].attributes == {}


@pytest.mark.parametrize(
    ("delimiter", "encoding"),
    [
        (",", "utf-8-sig"),  # Excel "CSV UTF-8"
        (";", "utf-8-sig"),  # Excel in locales with a decimal comma
        (";", "utf-8"),
        ("\t", "utf-16"),  # Excel "Unicode text": UTF-16LE with BOM, tab separated
        ("|", "utf-8"),
        ("\t", "utf-8"),
    ],
)
def test_delimiter_and_encoding_are_detected(delimiter: str, encoding: str) -> None:
    rows = [*ROWS, ["jörg@example.com", "Jörg Müller", "", "", "", "", "Straße"]]
    data = csv_bytes(rows, delimiter=delimiter, encoding=encoding)
    result = read(data)
    assert [r.email for r in result] == [
        "alice@example.com",
        "room1@example.com",
        "jörg@example.com",
    ]
    assert result[2].display_name == "Jörg Müller"
    assert result[2].attributes == {"department": "Straße"}


def test_quoted_newlines_keep_row_numbers_as_a_spreadsheet_shows_them() -> None:
    rows = [
        ["email", "display name", "notes"],
        ["a@example.com", "A", "line one\r\nline two, with a comma"],
        ["b@example.com", 'B "the second"', ""],
    ]
    result = read(csv_bytes(rows))
    assert [(r.row, r.email) for r in result] == [(2, "a@example.com"), (3, "b@example.com")]
    assert result[0].attributes == {"notes": "line one\r\nline two, with a comma"}
    assert result[1].display_name == 'B "the second"'


def test_lf_only_and_no_final_newline_are_read() -> None:
    data = b"email;name\na@example.com;A\nb@example.com;B"
    assert [r.display_name for r in read(data)] == ["A", "B"]


def test_blank_rows_are_skipped_but_counted_in_row_numbers() -> None:
    data = b"\r\nemail\r\n\r\na@example.com\r\n,\r\nb@example.com\r\n"
    assert [(r.row, r.email) for r in read(data)] == [(4, "a@example.com"), (6, "b@example.com")]


def test_single_column_file_is_read() -> None:
    assert [r.email for r in read(b"Email\na@example.com\n")] == ["a@example.com"]


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        (["E-Mail", "Name"], "display_name"),
        (["mail", "DisplayName"], "display_name"),
        (["Primary SMTP Address", "Display Name"], "display_name"),
        (["EmailAddress", "display_name"], "display_name"),
        (["E-Mail Address", "Full Name"], "display_name"),
    ],
)
def test_header_synonyms_are_matched_case_insensitively(headers: list[str], field: str) -> None:
    rows = read(csv_bytes([headers, ["a@example.com", "Anne"]]))
    assert getattr(rows[0], field) == "Anne"


def test_exchange_proxy_addresses_keep_only_smtp_entries() -> None:
    proxies = (
        "SMTP:anne@example.com;smtp:anne.alt@example.com;X500:/o=ExchangeLabs/ou=Exchange "
        "Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn=anne;SIP:anne@example.com;"
        "smtp:anne@example.onmicrosoft.com"
    )
    data = csv_bytes([["PrimarySmtpAddress", "ProxyAddresses"], ["anne@example.com", proxies]])
    assert read(data)[0].aliases == ("anne.alt@example.com", "anne@example.onmicrosoft.com")


def test_aliases_split_on_commas_and_semicolons_and_are_deduplicated() -> None:
    data = csv_bytes(
        [["email", "aliases"], ["a@example.com", "B@example.com, b@example.com;c@example.com; "]]
    )
    assert read(data)[0].aliases == ("b@example.com", "c@example.com")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", True),
        ("TRUE", True),
        ("yes", True),
        ("1", True),
        ("Enabled", True),
        ("active", True),
        ("false", False),
        ("No", False),
        ("0", False),
        ("disabled", False),
        ("Inactive", False),
    ],
)
def test_enabled_values(value: str, expected: bool) -> None:
    data = csv_bytes([["email", "status"], ["a@example.com", value]])
    assert read(data)[0].enabled is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", RecipientKind.USER),
        ("User", RecipientKind.USER),
        ("shared mailbox", RecipientKind.SHARED_MAILBOX),
        ("Shared", RecipientKind.SHARED_MAILBOX),
        ("SharedMailbox", RecipientKind.SHARED_MAILBOX),
        ("room", RecipientKind.ROOM),
        ("Equipment", RecipientKind.EQUIPMENT),
        ("group", RecipientKind.GROUP),
        ("Distribution List", RecipientKind.GROUP),
        ("dynamic distribution group", RecipientKind.GROUP),
        ("contact", RecipientKind.CONTACT),
        ("Public Folder", RecipientKind.PUBLIC_FOLDER),
    ],
)
def test_kind_values(value: str, expected: RecipientKind) -> None:
    data = csv_bytes([["email", "type"], ["a@example.com", value]])
    assert read(data)[0].kind is expected


def test_groups_permissions_and_attributes() -> None:
    data = csv_bytes(
        [
            ["email", "member of", "roles", "Department", "Cost Center"],
            [
                "a@example.com",
                "Staff@example.com; sales@example.com",
                "send-as, full access",
                "",
                "42",
            ],
        ]
    )
    row = read(data)[0]
    assert row.groups == ("staff@example.com", "sales@example.com")
    assert row.permissions == ("send-as", "full access")
    assert row.attributes == {"Cost Center": "42"}


def test_idn_domains_are_stored_in_ascii_form() -> None:
    assert read("email\nJörg@Bücher.de\n".encode())[0].email == "jörg@xn--bcher-kva.de"


def test_phone_numbers_and_dashes_are_not_formulas() -> None:
    data = csv_bytes([["email", "phone", "note"], ["a@example.com", "+44 20 7946 0000", "-"]])
    assert read(data)[0].attributes == {"phone": "+44 20 7946 0000", "note": "-"}


def test_path_and_file_object_sources_are_read(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(csv_bytes(ROWS))
    assert len(read_spreadsheet(path, filename=path.name).rows) == 2
    assert len(read_spreadsheet(str(path), filename=path.name).rows) == 2
    with path.open("rb") as handle:
        assert len(read_spreadsheet(handle, filename=path.name).rows) == 2


def test_non_seekable_upload_is_read() -> None:
    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
            chunk = self._data.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    result = read_spreadsheet(Pipe(csv_bytes(ROWS)), filename="people.csv")  # type: ignore[arg-type]
    assert len(result.rows) == 2


def test_result_describes_the_file() -> None:
    result = read_spreadsheet(csv_bytes(ROWS), filename="people.csv")
    assert result.format == "csv"
    assert result.sheet is None
    assert result.headers == tuple(HEADER)
    assert result.attribute_columns == ("department",)
    assert result.data_rows == 2
    assert result.ok


def test_stream_yields_rows_one_by_one_with_progress_and_to_record() -> None:
    rows = [["email"], *([f"user{i}@example.com"] for i in range(2500))]
    seen: list[int] = []
    result = read_spreadsheet(csv_bytes(rows), filename="x.csv", progress=seen.append)
    assert seen == [1000, 2000]
    assert len(result.rows) == 2500
    with open_spreadsheet(csv_bytes(ROWS), filename="x.csv") as stream:
        assert stream.headers == tuple(HEADER)
        first = next(iter(stream))
    assert isinstance(first, SheetRow)
    record = first.to_record()
    assert record.external_id == "alice@example.com"
    assert record.addresses == ("alice@example.com", "alice.s@example.com", "a@example.com")
    assert record.primary == "alice@example.com"


@pytest.mark.parametrize(
    "address",
    ["Alice@Example.COM", "jörg@Bücher.de", "x+tag@sub.example.org", "SMTP:b@example.com"],
)
def test_stored_addresses_are_what_lookups_normalize_to(address: str) -> None:
    [row] = read(csv_bytes([["email"], [address]]))
    assert row.email == normalize(address.removeprefix("SMTP:"))
