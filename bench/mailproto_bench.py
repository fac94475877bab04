"""Mail-protocol benchmark (issue 5): socketmap and tcp_table lookups against `roster serve`.

One run measures, with the same client (N persistent connections, one request in flight each,
one lookup in eight a miss):
  - `roster serve` with its socketmap and tcp_table listeners over a 1M-address LookupIndex
    loaded from a generated SQLite mirror (333,334 users x 3 addresses);
  - a bare asyncio netstring echo server: the ceiling for a Python server here;
  - OpenLDAP slapd (Debian package, installed if absent; private MDB instance on loopback)
    answering `(mail=...)` equality searches as Postfix `ldap_table` users do today.
Reports lookups/s, p50/p99 and server CPU µs per lookup (user+system CPU of the server process
from /proc/PID/stat divided by lookups) and the CPU `roster serve` spends idle (its index
poller, included in those figures), prints a markdown table and writes
bench/results/mailproto.md.

    .venv/bin/python -m bench.mailproto_bench [--users 333334] [--ldap-entries 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from app.db.engine import create_engine, create_sessionmaker
from app.db.migrate import upgrade
from app.directory.records import SourceKind
from app.directory.tenants import add_domain, ensure_connector, ensure_tenant
from bench.common import ROOT, cpu_seconds, free_port, machine, wait_http

T = TypeVar("T")
RESULTS = ROOT / "bench" / "results"
WORK = RESULTS / "mailproto"
SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SUFFIX = "dc=bench,dc=test"

# -- addresses as bench.mirror generates them: first{i}.last{i}@contoso.com, u{i}@contoso.com,
# alias{i}@fabrikam.com for i in 1..users


def address(i: int, users: int, miss: bool) -> str:
    n = i % users + 1
    if miss:
        return f"nobody{i}@contoso.com"
    return (f"first{n}.last{n}@contoso.com", f"u{n}@contoso.com", f"alias{n}@fabrikam.com")[i % 3]


async def _mirror_rows(url: str) -> tuple[str, str]:
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            tenant = await ensure_tenant(session)
            for name in ("contoso.com", "fabrikam.com"):
                await add_domain(session, tenant, name)
            connector = await ensure_connector(session, tenant, SourceKind.MANUAL)
            return tenant.id, connector.id
    finally:
        await engine.dispose()


def generate_mirror(path: Path, users: int) -> None:
    """bench.mirror's layout, with the tenant rows written by the app's own code (schema-proof)
    and the bulk rows by sqlite3 executemany (an ORM round would take minutes)."""
    path.unlink(missing_ok=True)
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url)
    tenant, connector = run_async(_mirror_rows(url))
    now = time.strftime("%Y-%m-%d %H:%M:%S.000000", time.gmtime())
    db = sqlite3.connect(path)
    with db:
        recipients, addresses = [], []
        for n in range(1, users + 1):
            rid = str(uuid.uuid4())
            recipients.append((rid, tenant, connector, rid, f"User {n}", now, now))
            addresses += [
                (tenant, f"first{n}.last{n}@contoso.com", rid, 1),
                (tenant, f"u{n}@contoso.com", rid, 0),
                (tenant, f"alias{n}@fabrikam.com", rid, 0),
            ]
        db.executemany(
            "INSERT INTO recipients (id, tenant_id, connector_id, source, stream, external_id,"
            " kind, display_name, enabled, attributes, source_hash, first_seen_at, last_seen_at)"
            " VALUES (?, ?, ?, 'manual', '', ?, 'user', ?, 1, '{}', 'x', ?, ?)",
            recipients,
        )
        db.executemany(
            "INSERT INTO addresses (tenant_id, address, recipient_id, is_primary)"
            " VALUES (?, ?, ?, ?)",
            addresses,
        )
    db.close()


# -- minimal BER for LDAP SearchRequest / responses (RFC 4511), enough for a benchmark client


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _len(len(content)) + content


def _int(tag: int, value: int) -> bytes:
    return _tlv(tag, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True))


def ldap_search(message_id: int, mail: str) -> bytes:
    request = b"".join(
        [
            _tlv(0x04, SUFFIX.encode()),
            _int(0x0A, 2),  # scope: wholeSubtree
            _int(0x0A, 0),  # derefAliases: never
            _int(0x02, 0),  # sizeLimit
            _int(0x02, 0),  # timeLimit
            _tlv(0x01, b"\x00"),  # typesOnly false
            _tlv(0xA3, _tlv(0x04, b"mail") + _tlv(0x04, mail.encode())),  # (mail=...)
            _tlv(0x30, _tlv(0x04, b"mail")),  # attributes: mail (Postfix result_attribute)
        ]
    )
    return _tlv(0x30, _int(0x02, message_id) + _tlv(0x63, request))


async def read_ldap_message(reader: asyncio.StreamReader) -> int:
    """Read one LDAPMessage; return the tag of its protocolOp."""
    header = await reader.readexactly(2)
    length = header[1]
    if length & 0x80:
        length = int.from_bytes(await reader.readexactly(length & 0x7F), "big")
    body = await reader.readexactly(length)
    id_len = body[1]
    return body[2 + id_len]


# -- clients


@dataclass
class Result:
    name: str
    lookups: int
    seconds: float
    cpu_us: float
    p50_ms: float
    p99_ms: float
    found: int

    @property
    def rate(self) -> float:
        return self.lookups / self.seconds


Ask = Callable[[asyncio.StreamReader, asyncio.StreamWriter, str, int], Awaitable[bool]]


async def ask_socketmap(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str, _: int
) -> bool:
    payload = b"recipients " + key.encode()
    writer.write(b"%d:%b," % (len(payload), payload))
    length = await reader.readuntil(b":")
    reply = await reader.readexactly(int(length[:-1]) + 1)
    return reply.startswith(b"OK")


async def ask_tcp(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str, _: int
) -> bool:
    writer.write(b"get %b\n" % key.encode())
    return (await reader.readline()).startswith(b"200")


async def ask_ldap(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str, message_id: int
) -> bool:
    writer.write(ldap_search(message_id, key))
    found = False
    while True:
        tag = await read_ldap_message(reader)
        if tag == 0x64:  # SearchResultEntry
            found = True
        elif tag == 0x65:  # SearchResultDone
            return found


async def client(ask: Ask, port: int, seconds: float, users: int, seed: int) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    latencies: list[float] = []
    found = 0
    i = seed
    deadline = time.perf_counter() + seconds
    message_id = 1
    while (start := time.perf_counter()) < deadline:
        i = (i * 1103515245 + 12345) % 2**31
        if await ask(reader, writer, address(i, users, miss=i % 8 == 0), message_id):
            found += 1
        message_id += 1
        latencies.append(time.perf_counter() - start)
    writer.close()
    latencies.append(-found)  # smuggle the hit count out; removed by measure()
    return latencies


async def measure(
    name: str, ask: Ask, port: int, pid: int, users: int, args: argparse.Namespace
) -> Result:
    async def run(seconds: float) -> tuple[list[list[float]], float, float]:
        cpu, wall = cpu_seconds(pid), time.perf_counter()
        runs = await asyncio.gather(
            *(client(ask, port, seconds, users, n + 1) for n in range(args.connections))
        )
        return runs, cpu_seconds(pid) - cpu, time.perf_counter() - wall

    await run(1.0)  # warm-up: connections, caches
    runs, cpu, wall = await run(args.seconds)
    found = int(-sum(r.pop() for r in runs))
    latencies = sorted(x for r in runs for x in r)
    count = len(latencies)
    return Result(
        name,
        count,
        wall,
        cpu / count * 1e6,
        latencies[count // 2] * 1e3,
        latencies[int(count * 0.99)] * 1e3,
        found,
    )


# -- servers


class EchoProtocol(asyncio.Protocol):
    """The ceiling: answers every `,`-terminated frame with a constant, parsing nothing."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(b"5:OK ok," * data.count(b","))  # type: ignore[attr-defined]


async def serve_echo(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(EchoProtocol, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def start_roster(db: Path, log: Path) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    ports = {"http": free_port(), "socketmap": free_port(), "tcp_table": free_port()}
    env = os.environ | {
        "ROSTER_DATABASE_URL": f"sqlite:///{db}",
        "ROSTER_SOCKETMAP_LISTEN": f"127.0.0.1:{ports['socketmap']}",
        "ROSTER_TCP_TABLE_LISTEN": f"127.0.0.1:{ports['tcp_table']}",
        "ROSTER_RUN_CONNECTORS": "false",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(ports["http"])],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    wait_http(f"http://127.0.0.1:{ports['http']}/readyz", proc)
    return proc, ports


def ensure_slapd() -> None:
    if os.access(SLAPD, os.X_OK) and os.access(SLAPADD, os.X_OK):
        return
    print("installing slapd and ldap-utils (Debian) ...", flush=True)
    # "no configuration": no system directory is created and nothing starts on port 389.
    subprocess.run(
        ["debconf-set-selections"],
        input=b"slapd slapd/no_configuration boolean true\n",
        check=True,
    )
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=600"]
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*apt, "update"], check=True, env=env)
    subprocess.run(
        [*apt, "install", "-y", "--no-install-recommends", "slapd", "ldap-utils"],
        check=True,
        env=env,
    )


SLAPD_CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {base}/slapd.pid
loglevel 0
database mdb
maxsize 4294967296
suffix "{suffix}"
rootdn "cn=admin,{suffix}"
rootpw bench
directory {base}/db
index objectClass eq
index mail eq
"""


def start_slapd(entries: int) -> tuple[subprocess.Popen[bytes], int, float]:
    base = WORK / "slapd"
    shutil.rmtree(base, ignore_errors=True)
    (base / "db").mkdir(parents=True)
    conf = base / "slapd.conf"
    conf.write_text(SLAPD_CONF.format(base=base, suffix=SUFFIX))
    ldif = base / "data.ldif"
    with ldif.open("w") as out:
        out.write(f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\n")
        out.write("dc: bench\no: bench\n\n")
        out.write(f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n")
        for n in range(1, entries + 1):
            out.write(
                f"dn: uid=u{n},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: u{n}\n"
                f"cn: User {n}\nsn: {n}\nmail: first{n}.last{n}@contoso.com\n"
                f"mail: u{n}@contoso.com\nmail: alias{n}@fabrikam.com\n\n"
            )
    started = time.monotonic()
    subprocess.run([SLAPADD, "-q", "-f", str(conf), "-l", str(ldif)], check=True)
    load_seconds = time.monotonic() - started
    port = free_port()
    # -d 0 keeps slapd in the foreground, so its pid is ours to measure and stop.
    proc = subprocess.Popen(
        [SLAPD, "-d", "0", "-f", str(conf), "-h", f"ldap://127.0.0.1:{port}/"],
        stdout=subprocess.DEVNULL,
        stderr=(base / "slapd.log").open("wb"),
    )
    wait_port(port, proc)
    return proc, port, load_seconds


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(args: argparse.Namespace) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    db = WORK / "mirror.db"
    marker = WORK / f"mirror-{args.users}.done"
    if not marker.exists():
        started = time.monotonic()
        generate_mirror(db, args.users)
        print(f"generated {args.users * 3:,} addresses in {time.monotonic() - started:.1f} s")
        marker.touch()
    ensure_slapd()

    results: list[Result] = []
    proc, ports = start_roster(db, WORK / "serve.log")
    try:
        log = (WORK / "serve.log").read_text()
        loaded = re.search(r"lookup index loaded: addresses=(\d+)", log)
        indexed = int(loaded.group(1)) if loaded else 0
        idle_cpu = idle_cpu_ms_per_s(proc.pid)
        for name, ask, port in [
            ("socketmap", ask_socketmap, ports["socketmap"]),
            ("tcp_table", ask_tcp, ports["tcp_table"]),
        ]:
            result = run_async(measure(f"roster {name}", ask, port, proc.pid, args.users, args))
            results.append(result)
            print(results[-1], flush=True)
    finally:
        stop(proc)

    echo_port = free_port()
    echo = subprocess.Popen(
        [sys.executable, "-m", "bench.mailproto_bench", "--echo", str(echo_port)]
    )
    try:
        wait_port(echo_port, echo)
        results.append(
            run_async(measure("echo", ask_socketmap, echo_port, echo.pid, args.users, args))
        )
        print(results[-1], flush=True)
    finally:
        stop(echo)

    slapd, slapd_port, load_seconds = start_slapd(args.ldap_entries)
    try:
        results.append(
            run_async(measure("slapd", ask_ldap, slapd_port, slapd.pid, args.ldap_entries, args))
        )
        print(results[-1], flush=True)
    finally:
        stop(slapd)

    report = render(results, indexed, args, load_seconds, idle_cpu)
    print(report)
    (RESULTS / "mailproto.md").write_text(report + "\n")


def idle_cpu_ms_per_s(pid: int, seconds: float = 3.0) -> float:
    """CPU the server burns with no lookups (the index poller, ROSTER_INDEX_POLL_INTERVAL):
    part of every per-lookup figure, the more so the fewer lookups a run gets through."""
    cpu = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - cpu) / seconds * 1e3


def render(
    results: list[Result], indexed: int, args: argparse.Namespace, load: float, idle_cpu: float
) -> str:
    by = {r.name: r for r in results}
    slapd, echo = by["slapd"], by["echo"]
    labels = {
        "roster socketmap": f"roster socketmap ({indexed:,} addresses)",
        "roster tcp_table": f"roster tcp_table ({indexed:,} addresses)",
        "echo": "bare asyncio netstring echo (ceiling)",
        "slapd": f"OpenLDAP slapd, MDB, `(mail=…)` ({args.ldap_entries * 3:,} addresses)",
    }
    lines = [
        f"Machine: {machine()}; {time.strftime('%Y-%m-%d')}; {args.connections} persistent "
        f"connections, one request in flight each, 1 in 8 lookups a miss, {args.seconds:g} s each",
        "",
        "| server | lookups/s | p50 ms | p99 ms | server CPU µs/lookup | x slapd lookups/s |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {labels[r.name]} | {r.rate:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
            f"{r.cpu_us:.1f} | {r.rate / slapd.rate:.2f} |"
        )
    sm = by["roster socketmap"]
    tcp = by["roster tcp_table"]
    lines += [
        "",
        f"Targets (issue 5): socketmap ≤ 15 µs server CPU: {sm.cpu_us:.1f} µs "
        f"({'met' if sm.cpu_us <= 15 else 'NOT met'}); tcp_table {tcp.cpu_us:.1f} µs "
        f"({'met' if tcp.cpu_us <= 15 else 'NOT met'}); ≥ 2 x slapd lookups/s: "
        f"{sm.rate / slapd.rate:.2f} x ({'met' if sm.rate >= 2 * slapd.rate else 'NOT met'}); "
        f"≥ 0.7 x echo ceiling: {sm.rate / echo.rate:.2f} x "
        f"({'met' if sm.rate >= 0.7 * echo.rate else 'NOT met'}).",
        f"Hits: socketmap {sm.found / sm.lookups:.1%}, tcp_table {tcp.found / tcp.lookups:.1%}, "
        f"slapd {slapd.found / slapd.lookups:.1%} (expected 87.5%). slapd bulk load (slapadd -q) "
        f"{load:.1f} s.",
        f"roster idle (index poller): {idle_cpu:.0f} ms CPU/s, i.e. "
        f"{idle_cpu * 1e3 / sm.rate:.1f} µs of each socketmap lookup at its rate; the echo "
        f"server has none.",
    ]
    return "\n".join(lines)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """uvloop when available, like `roster serve`, so client overhead stays small."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, default=333_334, help="3 addresses each")
    parser.add_argument("--ldap-entries", type=int, default=100_000, help="3 addresses each")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--echo", type=int, help=argparse.SUPPRESS)  # internal: serve the echo
    args = parser.parse_args()
    if args.echo:
        run_async(serve_echo(args.echo))
    else:
        run(args)


if __name__ == "__main__":
    main()
