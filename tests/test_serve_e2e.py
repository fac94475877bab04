"""`roster serve` as a real process on a free port, spoken to over TCP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    db = f"sqlite:///{tmp_path / 'roster.db'}"
    env = os.environ | {"ROSTER_DATABASE_URL": db}
    run = [sys.executable, "-m", "app"]
    subprocess.run([*run, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=60)
    subprocess.run(
        [*run, "domains", "add", "contoso.com"],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    subprocess.run(
        [*run, "users", "add", "alice@contoso.com", "--alias", "al@contoso.com"],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    created = subprocess.run(
        [*run, "apikey", "create", "e2e", "--scope", "write"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    key = created.stdout.strip().splitlines()[-1]
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [*run, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "roster serve did not come up"
            time.sleep(0.1)
        yield base, key
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def test_served_lookups_over_tcp(server: tuple[str, str]) -> None:
    base, key = server
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=headers) as client:
        assert (
            client.get("/v1/recipients/AL+x@contoso.com").json()["primary"] == "alice@contoso.com"
        )
        assert client.get("/v1/recipients/nobody@contoso.com").status_code == 404
        created = client.post("/v1/users", json={"email": "new@contoso.com"})
        assert created.status_code == 201
        # The process that committed sees its own write at once.
        assert client.get("/v1/recipients/new@contoso.com").status_code == 200
        assert (
            client.get(
                "/v1/recipients/x@y.com", headers={"Authorization": "Bearer nope"}
            ).status_code
            == 401
        )
        assert "paths" in client.get("/openapi.json").json()
