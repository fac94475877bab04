"""Graph connector benchmark: a full and an incremental delta round into SQLite and PostgreSQL.

The simulator runs in its own process (its CPU is measured apart from Roster's); Roster's side is
this process: the real GraphSource (msgraph-sdk request adapter, azure-identity, orjson) through
`run_cycle` into a fresh database. Where the time goes:

- send: HTTP round trips through the SDK (the simulator building pages, TLS, transfer)
- parse: orjson; map: Graph JSON -> ChangeSet; database: the runner's apply + commit per page.

    python -m bench.graph_bench                      # 100k users, 10k groups, 1M memberships
    python -m bench.graph_bench --users 10000 --groups 1000 --memberships 100000 --db sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import random
import resource
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy.engine import make_url

from bench.common import ROOT, cpu_seconds, free_port, machine, postgres_cpu_seconds

POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGETS = {"full": 30.0, "incremental": 2.0, "rss_mb": 1024.0}


@dataclass
class Result:
    db: str
    round: str
    objects: int
    pages: int
    wall: float
    roster_cpu: float
    simulator_cpu: float
    server_cpu: float | None
    send: float
    parse: float
    map: float
    database: float
    requests: int
    mbytes: float
    peak_rss_mb: float

    @property
    def rate(self) -> float:
        return self.objects / self.wall if self.wall else 0.0


class Timed:
    """Wraps a Source: time spent producing pages (network, parse, map) vs. the runner's share."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.streams = inner.streams
        self.producing = 0.0

    async def pages(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Any]:
        iterator = self.inner.pages(stream, cursor).__aiter__()
        while True:
            started = time.perf_counter()
            try:
                page = await iterator.__anext__()
            except StopAsyncIteration:
                return
            finally:
                self.producing += time.perf_counter() - started
            yield page


# ---- the simulator process
def serve_simulator(args: argparse.Namespace) -> None:
    from app.simulator.graph import run

    def announce(info: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()

    run(
        "127.0.0.1",
        args.port,
        seed=1,
        users=args.users,
        groups=args.groups,
        contacts=0,
        memberships=args.memberships,
        cert_dir=Path(args.cert_dir),
        page_size=args.page_size,
        announce=announce,
    )


def start_simulator(args: argparse.Namespace) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    port = free_port()
    cert_dir = tempfile.mkdtemp(prefix="roster-bench-sim-")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.graph_bench",
            "--serve-simulator",
            "--port",
            str(port),
            "--users",
            str(args.users),
            "--groups",
            str(args.groups),
            "--memberships",
            str(args.memberships),
            "--page-size",
            str(args.page_size),
            "--cert-dir",
            cert_dir,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    started = time.perf_counter()
    info = json.loads(proc.stdout.readline())
    print(
        f"simulator generated {info['users']} users, {info['groups']} groups, "
        f"{info['memberships']} memberships in {time.perf_counter() - started:.1f} s"
    )
    deadline = time.monotonic() + 60
    context = ssl.create_default_context(cafile=info["ca_bundle"])
    while True:
        try:
            httpx.get(f"{info['control_url']}/state", verify=context, timeout=2)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "simulator did not come up"
            time.sleep(0.2)
    return proc, info


def make_changes(info: dict[str, Any], count: int, seed: int) -> None:
    """`count` directory changes through the control API: new users, aliases, primaries,
    soft deletes, membership adds and removes."""
    rng = random.Random(seed)
    context = ssl.create_default_context(cafile=info["ca_bundle"])
    with httpx.Client(base_url=info["control_url"], verify=context, timeout=30) as control:
        per = count // 6
        sample = control.get("/sample", params={"n": 50 * per}).json()
        users = rng.sample(sample["users"], 3 * per)
        tag = uuid.uuid4().hex[:6]
        created: list[str] = []
        for i in range(count - 5 * per):
            user = control.post(
                "/users", json={"mail": f"bench.{tag}.{i}@contoso.com", "displayName": f"B {i}"}
            ).json()
            created.append(user["id"])
        for i, user in enumerate(users[:per]):
            control.post(
                f"/objects/{user['id']}/aliases", json={"address": f"a{tag}{i}@contoso.com"}
            )
        for i, user in enumerate(users[per : 2 * per]):
            control.post(
                f"/objects/{user['id']}/primary", json={"address": f"p{tag}{i}@contoso.com"}
            )
        for user in users[2 * per : 3 * per]:
            control.delete(f"/objects/{user['id']}")
        for i, gid in enumerate(rng.sample(sample["groups"], min(per, len(sample["groups"])))):
            control.post(f"/groups/{gid}/members", json={"id": created[i % len(created)]})
        removed = rng.sample(sample["memberships"], min(per, len(sample["memberships"])))
        for gid, member in removed:
            control.delete(f"/groups/{gid}/members/{member}")


# ---- Roster's side
def make_database(kind: str, workdir: Path) -> tuple[str, Any]:
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{workdir / 'bench.db'}", None
    name = f"roster_bench_{uuid.uuid4().hex[:10]}"
    server = make_url(POSTGRES_SERVER).set(drivername="postgresql")
    libpq = server.render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    url = make_url(POSTGRES_SERVER).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False), drop


async def run_rounds(
    kind: str, url: str, info: dict[str, Any], sim_pid: int, args: argparse.Namespace
) -> list[Result]:
    from app.connectors.graph.source import GraphSource
    from app.connectors.guard import GuardSettings
    from app.connectors.registry import ensure_env_connectors
    from app.connectors.runner import RunnerOptions, run_cycle
    from app.db.engine import create_engine, create_sessionmaker
    from app.settings import GraphSettings, Settings

    graph = GraphSettings(
        tenant_id=info["tenant_id"],
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        base_url=info["base_url"],
        authority_host=info["authority_host"],
        ca_bundle=info["ca_bundle"],
        streams=["users", "groups"],
    )
    settings = Settings(_env_file=None, database_url=url, graph=graph)  # type: ignore[call-arg]
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    results = []
    # One source for both rounds, as a connector worker keeps it (and its Graph client).
    source = GraphSource(graph)
    try:
        async with sessionmaker.begin() as session:
            (connector,) = await ensure_env_connectors(session, settings)
        for label in ("full", "incremental"):
            if label == "incremental":
                await asyncio.to_thread(make_changes, info, args.changes, seed=len(results))
            before = copy.deepcopy(source.stats)
            timed = Timed(source)
            server = postgres_cpu_seconds() if kind == "postgresql" else None
            sim_cpu, cpu, started = cpu_seconds(sim_pid), time.process_time(), time.perf_counter()
            report = await run_cycle(
                sessionmaker,
                connector.id,
                timed,
                full=label == "full",
                options=RunnerOptions(guard=GuardSettings(threshold=args.changes)),
            )
            wall = time.perf_counter() - started
            assert report.ok, report.error
            stats = source.stats
            results.append(
                Result(
                    db=kind,
                    round=label,
                    objects=stats.objects - before.objects,
                    pages=stats.pages - before.pages,
                    wall=wall,
                    roster_cpu=time.process_time() - cpu,
                    simulator_cpu=cpu_seconds(sim_pid) - sim_cpu,
                    server_cpu=None if server is None else postgres_cpu_seconds() - server,
                    send=stats.client.send_seconds - before.client.send_seconds,
                    parse=stats.client.parse_seconds - before.client.parse_seconds,
                    map=stats.map_seconds - before.map_seconds,
                    database=wall - timed.producing,
                    requests=stats.client.requests - before.client.requests,
                    mbytes=(stats.client.bytes - before.client.bytes) / 1e6,
                    peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                )
            )
            print(_row(results[-1]), flush=True)
    finally:
        await source.aclose()
        await engine.dispose()
    return results


HEADER = (
    "| database | round | objects | pages | wall s | objects/s | Roster CPU s | PostgreSQL CPU s "
    "| simulator CPU s | send s | parse s | map s | database s | requests | MB | peak RSS MB |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def _row(r: Result) -> str:
    return (
        f"| {r.db} | {r.round} | {r.objects:,} | {r.pages:,} | {r.wall:.2f} | {r.rate:,.0f} | "
        f"{r.roster_cpu:.2f} | {'-' if r.server_cpu is None else f'{r.server_cpu:.2f}'} | "
        f"{r.simulator_cpu:.2f} | {r.send:.2f} | {r.parse:.2f} | "
        f"{r.map:.2f} | {r.database:.2f} | {r.requests:,} | {r.mbytes:.0f} | {r.peak_rss_mb:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--memberships", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=1_000)
    parser.add_argument("--page-size", type=int, default=200)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "graph.md"))
    parser.add_argument("--serve-simulator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--cert-dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_simulator:
        serve_simulator(args)
        return
    from app.db.migrate import upgrade

    proc, info = start_simulator(args)
    results: list[Result] = []
    try:
        for kind in args.db.split(","):
            with tempfile.TemporaryDirectory(prefix="roster-bench-") as workdir:
                url, drop = make_database(kind, Path(workdir))
                try:
                    upgrade(url)
                    results += asyncio.run(run_rounds(kind, url, info, proc.pid, args))
                finally:
                    if drop is not None:
                        drop()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    report = "\n".join(
        [
            "# Graph connector benchmark",
            "",
            f"{args.users:,} users, {args.groups:,} groups, {args.memberships:,} membership "
            f"edges; incremental round: {args.changes:,} changes; {args.page_size} objects per "
            f"page. Machine: {machine()}. Targets: full < {TARGETS['full']:.0f} s, incremental "
            f"< {TARGETS['incremental']:.0f} s, peak RSS < {TARGETS['rss_mb']:.0f} MB.",
            "",
            "send = HTTP round trips through msgraph-sdk (includes the simulator building pages),"
            " parse = orjson, map = Graph JSON to change sets, database = the runner's apply and"
            " commit (wall minus the time spent producing pages). Simulator CPU is its own"
            " process. PostgreSQL CPU = every server process (backends, WAL writer,"
            " checkpointer, autovacuum) during the round; on SQLite the database work is inside"
            " Roster CPU.",
            "",
            HEADER,
            *(_row(r) for r in results),
            "",
        ]
    )
    print(report)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)
    os.sync()


if __name__ == "__main__":
    main()
