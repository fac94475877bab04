"""Helpers shared by the benchmarks: free ports, server processes, CPU time from /proc, wrk."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, which noisy neighbours on a shared machine do not inflate."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def postgres_cpu_seconds() -> float:
    """CPU of the PostgreSQL server: every postgres process (backends, WAL writer, checkpointer,
    autovacuum) plus its reaped children's (a backend that exited counts in the postmaster's).
    Call around one run and subtract; anything else using the server meanwhile counts too."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # exited meanwhile
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        if name.startswith("postgres"):
            fields = text.rsplit(")", 1)[1].split()
            total += sum(int(value) for value in fields[11:15]) / CLOCK_TICKS
    return total


def rss_bytes(pid: int) -> int:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) * 1024 if match else 0


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{cpu}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout} s")


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu_us: float
    errors: str
    statuses: dict[int, int]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def _ms(text: str, label: str) -> float:
    match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def run_wrk(
    url: str,
    pid: int,
    *,
    connections: int = 64,
    seconds: int = 15,
    threads: int = 2,
    script: Path | None = None,
    env: dict[str, str] | None = None,
    extra: Sequence[str] = (),
) -> WrkResult:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", *extra]
    if script is not None:
        cmd += ["-s", str(script)]
    before = cpu_seconds(pid)
    out = subprocess.run(
        [*cmd, url],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ | (env or {}),
        timeout=seconds + 60,
    ).stdout
    used = cpu_seconds(pid) - before
    requests = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", out).group(1))  # type: ignore[union-attr]
    duration = re.search(r"requests in ([\d.]+)(m?s)", out)
    secs = (
        float(duration.group(1)) / (1000 if duration and duration.group(2) == "ms" else 1)
        if duration
        else seconds
    )
    statuses = {int(code): int(n) for code, n in re.findall(r"^status (\d+): (\d+)$", out, re.M)}
    errors = ""
    err = None if statuses else re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    if sock:
        errors += sock.group(1)
    if err:
        errors += f" non-2xx={err.group(1)}"
    return WrkResult(
        requests, secs, _ms(out, "50"), _ms(out, "99"), used / requests * 1e6, errors, statuses
    )
