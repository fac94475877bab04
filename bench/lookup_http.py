"""HTTP lookup benchmark (issue: foundation): GET /v1/recipients/{address} on a 1M-address mirror.

One `roster serve` process, wrk with 64 connections asking random known (primary, tagged alias,
second-domain alias) and unknown addresses; in the same run a bare uvloop responder as the
reference. Reports throughput, p50/p99 and server CPU µs per request (from /proc/PID/stat), the
index build time and the index memory per address.

    .venv/bin/python -m bench.lookup_http [--users 333334] [--seconds 15]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from bench.common import ROOT, WrkResult, free_port, machine, rss_bytes, run_wrk, wait_http
from bench.mirror import generate_sqlite

RESULTS = ROOT / "bench" / "results"


def start_roster(db: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = os.environ | {"ROSTER_DATABASE_URL": f"sqlite:///{db}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    wait_http(f"http://127.0.0.1:{port}/readyz", proc)
    return proc, port


def api_key(db: Path) -> str:
    env = os.environ | {"ROSTER_DATABASE_URL": f"sqlite:///{db}"}
    out = subprocess.run(
        [sys.executable, "-m", "app", "apikey", "create", "bench", "--scope", "lookup"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    return out.strip().splitlines()[-1]


def answers(result: WrkResult) -> str:
    parts = [f"{code}: {n:,}" for code, n in sorted(result.statuses.items())]
    return ", ".join(parts) + (f"; socket errors {result.errors}" if result.errors else "") or "-"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=333_334, help="3 addresses each")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = RESULTS / "lookup_http"
    work.mkdir(exist_ok=True)

    empty_db, full_db = work / "empty.db", work / "mirror.db"
    generate_sqlite(empty_db, 0)
    marker = work / f"mirror-{args.users}.done"
    if not marker.exists():
        started = time.monotonic()
        generate_sqlite(full_db, args.users)
        print(f"generated {args.users * 3:,} addresses in {time.monotonic() - started:.1f} s")
        marker.touch()

    proc, _ = start_roster(empty_db, work / "empty.log")
    baseline_rss = rss_bytes(proc.pid)
    proc.terminate()
    proc.wait()

    key = api_key(full_db)
    proc, port = start_roster(full_db, work / "serve.log")
    try:
        full_rss = rss_bytes(proc.pid)
        log = (work / "serve.log").read_text()
        build = re.search(
            r"lookup index loaded: addresses=(\d+).*elapsed=([\d.]+)s cpu=([\d.]+)s", log
        )
        assert build, log
        indexed, build_seconds = int(build.group(1)), float(build.group(2))
        build_cpu = float(build.group(3))
        env = {"ROSTER_BENCH_KEY": key, "ROSTER_BENCH_USERS": str(args.users)}
        run_wrk(
            f"http://127.0.0.1:{port}",
            proc.pid,
            connections=args.connections,
            seconds=3,
            script=ROOT / "bench" / "lookup.lua",
            env=env,
        )  # warm-up
        roster = run_wrk(
            f"http://127.0.0.1:{port}",
            proc.pid,
            connections=args.connections,
            seconds=args.seconds,
            script=ROOT / "bench" / "lookup.lua",
            env=env,
        )
    finally:
        proc.terminate()
        proc.wait()

    bare_port = free_port()
    bare = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "bare_responder.py"), str(bare_port)]
    )
    try:
        time.sleep(1)
        run_wrk(f"http://127.0.0.1:{bare_port}/", bare.pid, connections=args.connections, seconds=2)
        reference = run_wrk(
            f"http://127.0.0.1:{bare_port}/",
            bare.pid,
            connections=args.connections,
            seconds=args.seconds,
        )
    finally:
        bare.terminate()
        bare.wait()

    per_address = (full_rss - baseline_rss) / max(indexed, 1)
    lines = [
        f"Machine: {machine()}; {time.strftime('%Y-%m-%d')}",
        "",
        "| server | requests/s | p50 ms | p99 ms | server CPU µs/request | answers |",
        "|---|---|---|---|---|---|",
        f"| roster lookup ({indexed:,} addresses) | {roster.rps:,.0f} | {roster.p50_ms:.2f} | "
        f"{roster.p99_ms:.2f} | {roster.server_cpu_us:.1f} | {answers(roster)} |",
        f"| bare uvloop responder (reference) | {reference.rps:,.0f} | {reference.p50_ms:.2f} | "
        f"{reference.p99_ms:.2f} | {reference.server_cpu_us:.1f} | {answers(reference)} |",
        "",
        f"Index: {indexed:,} addresses built from SQLite in {build_seconds:.1f} s "
        f"({build_cpu:.1f} s CPU); "
        f"RSS {full_rss / 2**20:.0f} MiB vs {baseline_rss / 2**20:.0f} MiB empty = "
        f"{per_address:.0f} B per address.",
    ]
    report = "\n".join(lines)
    print(report)
    (RESULTS / "lookup_http.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
