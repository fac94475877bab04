"""Import 100,000 recipients from CSV and from XLSX into SQLite and PostgreSQL; time and peak RSS.

Each import runs in its own process (fresh, migrated database) so peak RSS (VmHWM) belongs to
that import alone. The import is what `roster import` does: read the file in a thread, diff it
against the mirror, apply it in one transaction, store the report. A second import of the same
file (nothing changes) is timed too. Target: < 20 s per import. Usage:

    .venv/bin/python bench/spreadsheet_bench.py [--rows 100000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 20.0
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def scratch_database(kind: str, folder: Path, postgres: str) -> tuple[str, str | None]:
    """A fresh database URL and, for PostgreSQL, the name to drop afterwards."""
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{folder / f'bench-{uuid.uuid4().hex[:8]}.db'}", None
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"roster_bench_{uuid.uuid4().hex[:10]}"
    admin = make_url(postgres).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(postgres).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False), name


def drop_database(postgres: str, name: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(postgres).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def timing_apply() -> Iterator[list[float]]:
    """Wall seconds spent in `directory.service.apply` (the write path every connector shares),
    so "db s" splits into the spreadsheet connector's own state load and diff, and the apply."""
    from app.directory import service

    spent = [0.0]
    original = service.apply

    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - started

    service.apply = timed
    try:
        yield spent
    finally:
        service.apply = original


async def timed_import(url: str, path: Path) -> dict[str, float | int]:
    from app.connectors.spreadsheet.importer import read_upload, run_import
    from app.connectors.spreadsheet.report import ImportOptions
    from app.db.engine import create_engine, create_sessionmaker

    options = ImportOptions(max_bytes=256 * 2**20)
    engine = create_engine(url)
    try:
        with timing_apply() as apply_s:
            wall = time.perf_counter()
            sheet = await read_upload(path, filename=path.name, options=options)
            read_s = time.perf_counter() - wall
            async with create_sessionmaker(engine).begin() as session:
                report = await run_import(session, sheet, filename=path.name, options=options)
            total = time.perf_counter() - wall
    finally:
        await engine.dispose()
    assert report.error_count == 0, report.errors[:3]
    return {
        "read_s": round(read_s, 2),
        "db_s": round(total - read_s, 2),
        "apply_s": round(apply_s[0], 2),
        "total_s": round(total, 2),
        "adds": report.adds,
        "unchanged": report.unchanged,
    }


async def prepare(url: str) -> None:
    from app.db.engine import create_engine, create_sessionmaker
    from app.directory.tenants import add_domain, ensure_tenant

    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            tenant = await ensure_tenant(session)
            for name in ("example.com", "example.org"):
                await add_domain(session, tenant, name)
    finally:
        await engine.dispose()


def worker(url: str, path: Path) -> dict[str, object]:
    from app.db.migrate import upgrade
    from bench.spreadsheet_read_bench import peak_rss_mib

    upgrade(url)
    asyncio.run(prepare(url))
    baseline = peak_rss_mib()
    cpu = time.process_time()
    first = asyncio.run(timed_import(url, path))
    first_cpu = time.process_time() - cpu
    peak = peak_rss_mib()
    again = asyncio.run(timed_import(url, path))
    return {
        "first": first,
        "cpu_s": round(first_cpu, 2),
        "again": again,
        "baseline_rss_mib": round(baseline, 1),
        "peak_rss_mib": round(peak, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--only", choices=["sqlite", "postgresql"], default=None)
    parser.add_argument("--worker", nargs=2, metavar=("URL", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], Path(args.worker[1]))))
        return
    from bench.common import machine
    from bench.spreadsheet_read_bench import generate

    engines = [args.only] if args.only else ["sqlite", "postgresql"]
    lines = [
        f"Machine: {machine()}; {datetime.now(UTC).date().isoformat()}",
        "",
        f"Import of {args.rows:,} rows (each: email, display name, 2 aliases, enabled, kind, "
        "1 of 100 groups, 2 attributes) into a fresh database: read + diff + apply + report in "
        f"one transaction. Target < {TARGET_S:.0f} s. Re-import = the same file again "
        "(nothing changes). db s = everything after reading; apply s = the part of it spent in "
        "directory.service.apply (the rest is the connector's state load, diff and report).",
        "",
        "| file | database | read s | db s | apply s | total s | CPU s | peak RSS MiB (base) "
        "| re-import s | target |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        files = generate(Path(folder), args.rows)
        sizes = {kind: f"{path.stat().st_size / 2**20:.1f} MiB" for kind, path in files.items()}
        print(f"generated {args.rows:,} rows in {time.perf_counter() - started:.1f} s: {sizes}")
        for kind in ("csv", "xlsx"):
            for engine in engines:
                url, name = scratch_database(engine, Path(folder), args.postgres)
                try:
                    done = subprocess.run(
                        [sys.executable, __file__, "--worker", url, str(files[kind])],
                        capture_output=True,
                        text=True,
                        check=False,
                        cwd=ROOT,
                    )
                finally:
                    if name is not None:
                        drop_database(args.postgres, name)
                if done.returncode:
                    print(f"{kind} {engine} failed:\n{done.stderr[-3000:]}")
                    continue
                r = json.loads(done.stdout.strip().splitlines()[-1])
                first, again = r["first"], r["again"]
                ok = "met" if first["total_s"] < TARGET_S else "MISSED"
                lines.append(
                    f"| {kind} ({sizes[kind]}) | {engine} | {first['read_s']} | {first['db_s']} "
                    f"| {first['apply_s']} | {first['total_s']} | {r['cpu_s']} "
                    f"| {r['peak_rss_mib']} ({r['baseline_rss_mib']}) | {again['total_s']} | {ok} |"
                )
                print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "spreadsheet.md").write_text(text)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
