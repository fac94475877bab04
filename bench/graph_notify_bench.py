"""Graph change notifications: change-to-verdict latency and webhook ingest rate.

`roster serve` runs as its own process (its CPU is measured) with ROSTER_PUBLIC_URL set and the
scheduled poll a day away; the simulator runs in this process and delivers notifications to it.

- latency: time from a change in the simulator to the first HTTP lookup that reflects it, over
  mixed changes (create, alias added/removed, primary changed, soft/hard delete, restore, new
  mail-enabled group), one after another with random gaps so some land while a round runs;
- ingest: wrk POSTs notifications that pass the clientState check to /v1/graph/notifications,
  one item per request (the worst case) and ten per request (Graph batches), while the inbox
  drives delta rounds in the same process.

    python -m bench.graph_notify_bench                    # SQLite, 200 changes
    python -m bench.graph_notify_bench --db postgresql --changes 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy.engine import make_url

from app.simulator.graph import SimulatorState, TenantSpec, start_in_thread
from app.simulator.graph.subscriptions import subscription_service
from bench.common import ROOT, cpu_seconds, free_port, machine, run_wrk, wait_http

POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SECRET = "bench-secret-key-0123456789abcdef"  # noqa: S105 - a throwaway bench database
TARGETS = {"p99_s": 2.0, "ingest_per_s": 2000.0}
LUA = r"""
local sub = os.getenv("ROSTER_NOTIFY_SUB")
local state = os.getenv("ROSTER_NOTIFY_STATE")
local batch = tonumber(os.getenv("ROSTER_NOTIFY_BATCH") or "1")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
local threads = {}
function setup(thread)
  thread:set("tag", tostring(#threads))
  table.insert(threads, thread)
end
function init(args)
  counts = {}
  n = 0
  math.randomseed(os.time() + (tonumber(tag) or 0))
end
request = function()
  local items = {}
  for i = 1, batch do
    n = n + 1
    items[i] = string.format('{"subscriptionId":"%s","changeType":"updated","clientState":"%s",'
      .. '"resource":"Users/%s-%d-%d","subscriptionExpirationDateTime":"2030-01-01T00:00:00Z",'
      .. '"tenantId":"contoso"}', sub, state, tostring(tag), math.random(1, 1e9), n)
  end
  return wrk.format(nil, nil, nil, '{"value":[' .. table.concat(items, ",") .. ']}')
end
function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, c in pairs(thread:get("counts")) do
      total[status] = (total[status] or 0) + c
    end
  end
  for status, c in pairs(total) do
    io.write(string.format("status %d: %d\n", status, c))
  end
end
"""


@dataclass
class Ingest:
    batch: int
    requests_per_s: float
    notifications_per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu_us: float  # per notification
    statuses: dict[int, int]


def _database(kind: str, tmp: Path) -> tuple[str, Any]:
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'roster.db'}", None
    name = f"roster_bench_{uuid.uuid4().hex[:10]}"
    admin = make_url(POSTGRES_SERVER).set(drivername="postgresql")
    dsn = admin.render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    url = make_url(POSTGRES_SERVER).set(database=name).render_as_string(hide_password=False)
    return url, drop


class Changes:
    """Mixed directory changes; each returns (address, verdict a lookup must then give)."""

    def __init__(self, state: SimulatorState, domain: str, rng: random.Random) -> None:
        self.state, self.domain, self.rng = state, domain, rng
        self.live: list[dict[str, Any]] = []  # {"id", "address", "aliases"}
        self.soft: list[dict[str, Any]] = []
        self.n = 0

    def _name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}.{uuid.uuid4().hex[:6]}@{self.domain}"

    def next(self) -> tuple[str, str, str]:
        ops = ["create", "create_group"]
        if self.live:
            ops += ["alias", "primary", "soft_delete", "hard_delete"]
        if any(u["aliases"] for u in self.live):
            ops.append("unalias")
        if self.soft:
            ops.append("restore")
        op = self.rng.choice(ops) if len(self.live) > 3 else "create"
        return (op, *getattr(self, op)())

    def create(self) -> tuple[str, str]:
        address = self._name("bench.user")
        obj = self.state.add_user(mail=address, displayName="Bench User")
        self.live.append({"id": obj["id"], "address": address, "aliases": []})
        return address, "accept"

    def create_group(self) -> tuple[str, str]:
        address = self._name("bench.group")
        self.state.add_group(mail=address, displayName="Bench Group", mailEnabled=True)
        return address, "accept"

    def alias(self) -> tuple[str, str]:
        user = self.rng.choice(self.live)
        alias = self._name("bench.alias")
        self.state.add_alias(user["id"], alias)
        user["aliases"].append(alias)
        return alias, "accept"

    def unalias(self) -> tuple[str, str]:
        user = self.rng.choice([u for u in self.live if u["aliases"]])
        alias = user["aliases"].pop()
        self.state.remove_alias(user["id"], alias)
        return alias, "reject"

    def primary(self) -> tuple[str, str]:
        user = self.rng.choice(self.live)
        address = self._name("bench.primary")
        self.state.set_primary(user["id"], address)
        user["aliases"].append(user["address"])  # the old primary stays as an alias
        user["address"] = address
        return address, "accept"

    def soft_delete(self) -> tuple[str, str]:
        user = self.live.pop(self.rng.randrange(len(self.live)))
        self.state.delete(user["id"])
        self.soft.append(user)
        return user["address"], "reject"

    def hard_delete(self) -> tuple[str, str]:
        user = self.live.pop(self.rng.randrange(len(self.live)))
        self.state.delete(user["id"], hard=True)
        return user["address"], "reject"

    def restore(self) -> tuple[str, str]:
        user = self.soft.pop(self.rng.randrange(len(self.soft)))
        self.state.restore(user["id"])
        self.live.append(user)
        return user["address"], "accept"


async def measure_latency(
    base: str, key: str, changes: Changes, count: int, rng: random.Random
) -> tuple[list[float], dict[str, int]]:
    latencies: list[float] = []
    kinds: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:
        for _ in range(count):
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            started = time.perf_counter()
            op, address, verdict = changes.next()
            kinds[op] = kinds.get(op, 0) + 1
            while True:
                answer = await http.get(f"/v1/recipients/{address}")
                if answer.json().get("verdict") == verdict:
                    break
                if time.perf_counter() - started > 60:
                    raise RuntimeError(f"{op} of {address} not reflected after 60 s")
                await asyncio.sleep(0.005)
            latencies.append(time.perf_counter() - started)
    return latencies, kinds


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=10, help="per ingest run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/graph_notify.md")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="roster-notify-bench-"))
    state = SimulatorState.seeded(
        TenantSpec(users=args.users, groups=args.groups, contacts=args.users // 20,
                   memberships=args.users * 4),
        seed=args.seed,
    )  # fmt: skip
    sim = start_in_thread(state, cert_dir=tmp / "certs")
    service = subscription_service(state)
    url, drop = _database(args.db, tmp)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = os.environ | {
        "ROSTER_DATABASE_URL": url,
        "ROSTER_PUBLIC_URL": base,
        "ROSTER_SECRET_KEY": SECRET,
        "ROSTER_GRAPH__TENANT_ID": state.tenant_id,
        "ROSTER_GRAPH__CLIENT_ID": state.client_id,
        "ROSTER_GRAPH__CLIENT_SECRET": state.client_secret,
        "ROSTER_GRAPH__BASE_URL": sim.base_url,
        "ROSTER_GRAPH__AUTHORITY_HOST": sim.authority,
        "ROSTER_GRAPH__CA_BUNDLE": str(sim.ca_file),
        "ROSTER_GRAPH__POLL_INTERVAL": "P1D",  # no poll during the run: notifications only
    }
    run = [sys.executable, "-m", "app"]
    subprocess.run([*run, "db", "upgrade"], env=env, check=True, capture_output=True)
    made = subprocess.run(
        [*run, "apikey", "create", "bench", "--scope", "lookup"],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    key = made.stdout.strip().splitlines()[-1]
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen(
        [*run, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_http(f"{base}/healthz", proc)
        sample = next(iter(state.expected_accepted()))
        deadline = time.monotonic() + 300
        while True:
            answer = httpx.get(
                f"{base}/v1/recipients/{sample}", headers={"Authorization": f"Bearer {key}"}
            )
            if answer.json().get("verdict") == "accept" and len(service.all()) == 2:
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("roster did not become ready; see " + str(tmp / "serve.log"))
            time.sleep(0.2)
        time.sleep(2)  # the catch-up rounds after subscribing
        domain = sorted(state.store.accepted_domains())[0]
        rng = random.Random(args.seed)
        cpu_before = cpu_seconds(proc.pid)
        latencies, kinds = asyncio.run(
            measure_latency(base, key, Changes(state, domain, rng), args.changes, rng)
        )
        latency_cpu = cpu_seconds(proc.pid) - cpu_before
        users = next(s for s in service.all() if s.resource == "/users")
        script = tmp / "notify.lua"
        script.write_text(LUA)
        ingests = []
        for batch in (1, 10):
            result = run_wrk(
                f"{base}/v1/graph/notifications",
                proc.pid,
                connections=args.connections,
                seconds=args.seconds,
                script=script,
                env={
                    "ROSTER_NOTIFY_SUB": users.id,
                    "ROSTER_NOTIFY_STATE": users.client_state or "",
                    "ROSTER_NOTIFY_BATCH": str(batch),
                },
            )
            ingests.append(
                Ingest(
                    batch,
                    result.rps,
                    result.rps * batch,
                    result.p50_ms,
                    result.p99_ms,
                    result.server_cpu_us / batch,
                    result.statuses,
                )
            )
            time.sleep(3)  # let the rounds the burst asked for finish
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        service.stop()
        sim.stop()
        if drop is not None:
            drop()
    report(args, latencies, kinds, latency_cpu, ingests)


def report(
    args: argparse.Namespace,
    latencies: list[float],
    kinds: dict[str, int],
    latency_cpu: float,
    ingests: list[Ingest],
) -> None:
    p50, p90, p99 = (percentile(latencies, q) for q in (0.5, 0.9, 0.99))
    lines = [
        "# Graph change notifications",
        "",
        f"Machine: {machine()}. Database: {args.db}. Tenant: {args.users} users, "
        f"{args.groups} groups. `roster serve` in its own process, simulator in the bench "
        "process, scheduled poll disabled (`ROSTER_GRAPH__POLL_INTERVAL=P1D`).",
        "",
        "## Change to verdict (simulator change → first HTTP lookup reflecting it)",
        "",
        "| changes | p50 | p90 | p99 | max | mean | server CPU / change | target p99 |",
        "|---|---|---|---|---|---|---|---|",
        f"| {len(latencies)} | {p50 * 1000:.0f} ms | {p90 * 1000:.0f} ms | {p99 * 1000:.0f} ms "
        f"| {max(latencies) * 1000:.0f} ms | {statistics.mean(latencies) * 1000:.0f} ms "
        f"| {latency_cpu / len(latencies) * 1000:.0f} ms | < {TARGETS['p99_s']:.0f} s |",
        "",
        "Mix: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + ". Server CPU "
        "includes the lookups polled every 5 ms while waiting.",
        "",
        "## Ingest at 202 (`POST /v1/graph/notifications`, clientState verified, stored)",
        "",
        f"wrk, {args.connections} connections, {args.seconds} s per row.",
        "",
        "| items / request | requests/s | notifications/s | p50 | p99 | server CPU / notification "
        "| statuses | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i in ingests:
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(i.statuses.items()))
        lines.append(
            f"| {i.batch} | {i.requests_per_s:,.0f} | {i.notifications_per_s:,.0f} "
            f"| {i.p50_ms:.1f} ms | {i.p99_ms:.1f} ms | {i.server_cpu_us:.0f} µs | {statuses} "
            f"| ≥ {TARGETS['ingest_per_s']:,.0f}/s |"
        )
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
