"""POST /v1/imports and GET /v1/imports/{id}: upload, diff, apply, and lookups that follow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from app.connectors.spreadsheet import write_template
from tests.connectors.spreadsheet.files import csv_bytes, xlsx_bytes
from tests.factories import api_domain, api_key, auth

HEADER = ["email", "display name", "aliases", "groups", "department"]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
async def key(app: Any, client: httpx.AsyncClient) -> str:
    key = await api_key(app, "write")
    await api_domain(client, key, "contoso.com")
    return key


async def upload(
    client: httpx.AsyncClient,
    key: str,
    content: bytes,
    *,
    filename: str = "people.csv",
    **params: Any,
) -> httpx.Response:
    query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()}
    return await client.post(
        "/v1/imports",
        files={"file": (filename, content, "text/csv" if filename.endswith(".csv") else XLSX)},
        params=query,
        headers=auth(key),
    )


async def verdict(client: httpx.AsyncClient, key: str, address: str) -> str:
    response = await client.get(f"/v1/recipients/{address}", headers=auth(key))
    answer: str = response.json()["verdict"]
    return answer


PEOPLE = csv_bytes(
    [
        HEADER,
        ["alice@contoso.com", "Alice", "ali@contoso.com", "staff@contoso.com", "Sales"],
        ["bob@contoso.com", "Bob", "", "staff@contoso.com", "IT"],
    ]
)


async def test_import_makes_recipients_accepted_by_lookups(
    client: httpx.AsyncClient, key: str
) -> None:
    response = await upload(client, key, PEOPLE)
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["status"], report["adds"], report["updates"], report["removes"]) == (
        "applied",
        3,  # alice, bob and the group staff@
        0,
        0,
    )
    for address in ("alice@contoso.com", "ali+news@contoso.com", "bob@contoso.com"):
        assert await verdict(client, key, address) == "accept"
    answer = (await client.get("/v1/recipients/staff@contoso.com", headers=auth(key))).json()
    assert (answer["verdict"], answer["kind"], answer["source"]) == (
        "accept",
        "group",
        "spreadsheet",
    )
    stored = await client.get(f"/v1/imports/{report['id']}", headers=auth(key))
    assert stored.status_code == 200
    assert stored.json() == report


async def test_dry_run_returns_the_diff_and_changes_nothing(
    client: httpx.AsyncClient, key: str
) -> None:
    response = await upload(client, key, PEOPLE, dry_run=True)
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["status"], report["dry_run"], report["applied"], report["adds"]) == (
        "dry_run",
        True,
        False,
        3,
    )
    assert [r["email"] for r in report["diff"]["adds"]] == [
        "alice@contoso.com",
        "bob@contoso.com",
        "staff@contoso.com",
    ]
    assert await verdict(client, key, "alice@contoso.com") == "reject"
    assert (await client.get(f"/v1/imports/{report['id']}", headers=auth(key))).json()[
        "status"
    ] == "dry_run"


async def test_bad_rows_reject_the_import_with_every_row_listed(
    client: httpx.AsyncClient, key: str
) -> None:
    content = csv_bytes(
        [
            HEADER,
            ["alice@contoso.com", "Alice", "", "", ""],
            ["not an address", "X", "", "", ""],
            ["carol@elsewhere.org", "Carol", "", "", ""],
        ]
    )
    response = await upload(client, key, content)
    assert response.status_code == 422
    body = response.json()
    assert (body["error"], body["status"], body["adds"]) == ("ImportRejected", "rejected", 0)
    assert [(e["row"], e["column"]) for e in body["errors"]] == [(3, "email"), (4, "email")]
    assert "not an accepted domain" in body["errors"][1]["reason"]
    assert await verdict(client, key, "alice@contoso.com") == "reject"

    partial = await upload(client, key, content, partial=True)
    assert partial.status_code == 200
    assert (partial.json()["status"], partial.json()["adds"]) == ("applied", 1)
    assert await verdict(client, key, "alice@contoso.com") == "accept"


async def test_refused_file_is_422_with_the_error_shape(
    client: httpx.AsyncClient, key: str
) -> None:
    response = await upload(client, key, csv_bytes([["email", "password"], ["a@contoso.com", "x"]]))
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "SpreadsheetError"
    assert "never stores passwords" in body["detail"]


async def test_add_domains_accepts_the_new_domain(client: httpx.AsyncClient, key: str) -> None:
    content = csv_bytes([["email"], ["dan@contoso.com"], ["erin@fabrikam.example"]])
    assert (await upload(client, key, content)).status_code == 422
    response = await upload(client, key, content, add_domains=True)
    assert response.status_code == 200, response.text
    assert response.json()["domains_added"] == ["fabrikam.example"]
    assert await verdict(client, key, "erin@fabrikam.example") == "accept"


async def test_replace_mode_removes_rows_missing_from_the_file(
    client: httpx.AsyncClient, key: str
) -> None:
    assert (await upload(client, key, PEOPLE)).status_code == 200
    only_alice = csv_bytes([["email"], ["alice@contoso.com"]])
    merged = (await upload(client, key, only_alice)).json()
    assert (merged["mode"], merged["removes"]) == ("merge", 0)
    assert await verdict(client, key, "bob@contoso.com") == "accept"
    replaced = (await upload(client, key, only_alice, mode="replace")).json()
    assert replaced["removes"] == 2  # bob and the group nobody names any more
    assert {r["email"] for r in replaced["diff"]["removes"]} == {
        "bob@contoso.com",
        "staff@contoso.com",
    }
    assert await verdict(client, key, "bob@contoso.com") == "reject"


async def test_xlsx_upload_and_sheet_parameter(client: httpx.AsyncClient, key: str) -> None:
    content = xlsx_bytes(
        {"Notes": [["nothing here"]], "People": [["E-Mail", "Name"], ["fay@contoso.com", "Fay"]]}
    )
    response = await upload(client, key, content, filename="people.xlsx", sheet="People")
    assert response.status_code == 200, response.text
    assert (response.json()["format"], response.json()["sheet"]) == ("xlsx", "People")
    assert await verdict(client, key, "fay@contoso.com") == "accept"


async def test_upload_over_the_import_limit_is_413(app: Any, client: httpx.AsyncClient) -> None:
    key = await api_key(app, "write")
    settings = app.app.app.state.settings
    assert settings.max_import_bytes > settings.max_body_bytes
    # Bigger than the general body limit, below the import limit: accepted on this route only.
    rows = [["email", "notes"]] + [
        [f"user{i}@contoso.com", "x" * 200] for i in range(settings.max_body_bytes // 200 + 10)
    ]
    big = csv_bytes(rows)
    assert settings.max_body_bytes < len(big) < settings.max_import_bytes
    response = await upload(client, key, big, dry_run=True, add_domains=True)
    assert response.status_code == 200, response.text
    other = await client.post(
        "/v1/domains", content=b"x" * (settings.max_body_bytes + 1), headers=auth(key)
    )
    assert other.status_code == 413

    settings.max_import_bytes = len(big) - 1  # the route reads the limit per request
    too_big = await upload(client, key, big, dry_run=True)
    assert too_big.status_code == 413
    assert too_big.json()["error"] == "PayloadTooLarge"


async def test_import_needs_write_scope(app: Any, client: httpx.AsyncClient) -> None:
    reader = await api_key(app, "read")
    assert (await upload(client, reader, PEOPLE)).status_code == 403
    assert (await client.get("/v1/imports/nope", headers=auth(reader))).status_code == 404


async def test_openapi_documents_the_import_responses(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    post = spec["paths"]["/v1/imports"]["post"]
    assert {"200", "401", "403", "413", "422", "503"} <= set(post["responses"])
    assert "multipart/form-data" in post["requestBody"]["content"]
    assert {"200", "401", "403", "404"} <= set(
        spec["paths"]["/v1/imports/{import_id}"]["get"]["responses"]
    )


async def test_operator_flow_template_fill_preview_import_lookup(
    client: httpx.AsyncClient, key: str, tmp_path: Path
) -> None:
    """Download the template, fill it in, preview, import, and see the lookups accept."""
    from openpyxl import load_workbook

    template = write_template(tmp_path / "roster-template.xlsx")
    workbook = load_workbook(template)
    sheet = workbook.worksheets[0]
    for row in sheet.iter_rows(min_row=2):  # the operator types over the examples
        for cell in row:
            if isinstance(cell.value, str):
                cell.value = cell.value.replace("example.com", "contoso.com")
    sheet.append(["new.hire@contoso.com", "New Hire", "", "yes", "user", "staff@contoso.com"])
    workbook.save(template)
    content = template.read_bytes()

    preview = await upload(client, key, content, filename="filled.xlsx", dry_run=True)
    assert preview.status_code == 200, preview.text
    assert preview.json()["errors"] == []
    assert preview.json()["adds"] == 6  # 4 rows and the 2 groups named only in the groups column
    assert preview.json()["groups_created"] == [
        "Front desk <frontdesk@contoso.com>",
        "Finance Team",
    ]
    assert await verdict(client, key, "new.hire@contoso.com") == "reject"

    applied = await upload(client, key, content, filename="filled.xlsx")
    assert applied.json()["adds"] == 6
    for address in ("alice@contoso.com", "contact@contoso.com", "everyone@contoso.com"):
        assert await verdict(client, key, address) == "accept"
    assert await verdict(client, key, "new.hire@contoso.com") == "accept"
    members = await client.get("/v1/groups", headers=auth(key), params={"limit": 10})
    assert members.status_code == 200
    again = (await upload(client, key, content, filename="filled.xlsx")).json()
    assert (again["adds"], again["updates"], again["removes"], again["unchanged"]) == (0, 0, 0, 4)


def _zip_bomb() -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
        with archive.open("xl/worksheets/sheet1.xml", "w") as part:
            for _ in range(32):  # 32 MiB of whitespace, a few KiB compressed
                part.write(b" " * (1024 * 1024))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content", "filename", "expected"),
    [
        (b"", "empty.csv", "the file is empty"),
        (csv_bytes([["email", "display name"]]), "header.csv", "but no data rows"),
        (csv_bytes([["name"], ["Alice"]]), "nomail.csv", "no email column"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "old.xls", "save it as"),
        (_zip_bomb(), "bomb.xlsx", "zip bomb"),
    ],
    ids=["empty", "header-only", "no-email-column", "legacy-xls", "zip-bomb"],
)
async def test_every_refused_file_gets_a_clear_422(
    client: httpx.AsyncClient, key: str, content: bytes, filename: str, expected: str
) -> None:
    response = await upload(client, key, content, filename=filename)
    assert response.status_code == 422, response.text
    assert expected in response.json()["detail"]
    assert response.json()["error"] == "SpreadsheetError"


async def test_entity_expansion_is_refused(client: httpx.AsyncClient, key: str) -> None:
    from tests.connectors.spreadsheet.files import handmade_xlsx
    from tests.connectors.spreadsheet.test_file_errors import BILLION_LAUGHS

    response = await upload(client, key, handmade_xlsx(BILLION_LAUGHS), filename="evil.xlsx")
    assert response.status_code == 422
    assert "entity declaration" in response.json()["detail"]


async def test_row_level_bad_input_is_listed_with_row_column_and_reason(
    client: httpx.AsyncClient, key: str
) -> None:
    content = csv_bytes(
        [
            ["email", "display name", "aliases"],
            ["ann@contoso.com", '=HYPERLINK("http://x")', ""],
            ["ben@contoso.com", "x" * 5000, ""],
            ["cat@contoso.com", "Cat", "ann@contoso.com"],
            ["dog at contoso.com", "Dog", ""],
            ["eel@contoso.com", "Eel", ""],
        ]
    )
    response = await upload(client, key, content)
    assert response.status_code == 422
    errors = response.json()["errors"]
    found = {(e["row"], e["column"]): e["reason"] for e in errors}
    assert sorted(found) == [
        (2, "display name"),
        (2, "email"),
        (3, "display name"),
        (4, "aliases"),
        (5, "email"),
    ]
    assert "formula" in found[2, "display name"] and "limit is" in found[3, "display name"]
    assert "may appear once" in found[2, "email"] and "not a valid address" in found[5, "email"]
    partial = await upload(client, key, content, partial=True)
    assert (partial.json()["adds"], partial.json()["error_count"]) == (1, 5)
    assert await verdict(client, key, "eel@contoso.com") == "accept"
    assert await verdict(client, key, "ann@contoso.com") == "reject"


async def test_body_limit_is_per_route() -> None:
    """The middleware gives /v1/imports its own (bigger) limit; other routes keep theirs."""
    from app.api.limits import BodySizeLimit

    async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = (await receive())["body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})

    app = BodySizeLimit(echo, max_bytes=10, routes={"/v1/imports": 100})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        assert (await client.post("/v1/users", content=b"x" * 11)).status_code == 413
        assert (await client.post("/v1/imports", content=b"x" * 100)).text == "100"
        assert (await client.post("/v1/imports/", content=b"x" * 100)).status_code == 200
        too_big = await client.post("/v1/imports", content=b"x" * 101)
        assert too_big.status_code == 413
        assert too_big.json() == {
            "error": "PayloadTooLarge",
            "detail": "request body over 100 bytes",
        }


async def test_groups_named_in_the_sheet_are_listed_and_a_group_without_address_is_no_recipient(
    client: httpx.AsyncClient, key: str
) -> None:
    content = csv_bytes(
        [
            HEADER,
            ["alice@contoso.com", "Alice", "", "Sales Team; Front desk <desk@contoso.com>", ""],
            ["bob@contoso.com", "Bob", "", "sales team", ""],
        ]
    )
    preview = (await upload(client, key, content, dry_run=True)).json()
    assert preview["groups_created"] == ["Front desk <desk@contoso.com>", "Sales Team"]
    new = [
        (r["row"], r["email"], r["name"]) for r in preview["diff"]["adds"] if r["kind"] == "group"
    ]
    assert new == [(None, "desk@contoso.com", None), (None, None, "Sales Team")]
    assert (await client.get("/v1/groups", headers=auth(key))).json()["total"] == 0

    applied = await upload(client, key, content)
    assert applied.status_code == 200, applied.text
    assert applied.json()["groups_created"] == preview["groups_created"]
    listed = (await client.get("/v1/groups", headers=auth(key))).json()
    by_name = {g["display_name"]: g for g in listed["items"]}
    assert set(by_name) == {"Front desk", "Sales Team"}
    sales = by_name["Sales Team"]
    assert (sales["email"], sales["aliases"], sales["source"]) == (None, [], "spreadsheet")
    assert by_name["Front desk"]["email"] == "desk@contoso.com"
    members = await client.get(f"/v1/groups/{sales['id']}/members", headers=auth(key))
    assert {m["email"] for m in members.json()["items"]} == {
        "alice@contoso.com",
        "bob@contoso.com",
    }
    groups_of_bob = await client.get("/v1/recipients/bob@contoso.com/groups", headers=auth(key))
    assert [g["display_name"] for g in groups_of_bob.json()["items"]] == ["Sales Team"]
    # The named group has no address: the only addresses lookups accept are the file's own.
    assert await verdict(client, key, "desk@contoso.com") == "accept"
    for address in ("sales-team@contoso.com", "salesteam@contoso.com", "sales@contoso.com"):
        assert await verdict(client, key, address) == "reject"
    again = (await upload(client, key, content)).json()
    assert (again["adds"], again["updates"], again["groups_created"]) == (0, 0, [])
