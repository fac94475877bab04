"""Running the simulator: in a background thread (tests, demo) or in the foreground (CLI)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from app.simulator.graph.app import create_simulator_app, wrap_asgi
from app.simulator.graph.certs import CertPaths, ensure_certificates
from app.simulator.graph.generator import TenantSpec
from app.simulator.graph.state import SimulatorState

logger = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """Remembers its event loop so another thread can abort connections on stop."""

    loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: Any = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def abort_connections(self) -> None:
        # An idle TLS keep-alive connection waits for the client's close_notify on a normal
        # close; a test double going away should not wait for that.
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()


@dataclass(slots=True)
class RunningSimulator:
    """A simulator serving on `origin`; `base_url` is what `ROSTER_GRAPH__BASE_URL` takes."""

    origin: str  # https://127.0.0.1:PORT, also the authority host
    ca_file: Path
    state: SimulatorState
    _server: _Server
    _thread: threading.Thread

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1.0"

    @property
    def authority(self) -> str:
        return self.origin

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving at once, dropping open connections; safe to call twice."""
        if not self._thread.is_alive():
            return
        self._server.should_exit = True
        if (loop := self._server.loop) is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(self._server.abort_connections)
        self._thread.join(timeout)


def _config(state: SimulatorState, host: str, port: int, certs: CertPaths) -> uvicorn.Config:
    return uvicorn.Config(
        wrap_asgi(create_simulator_app(state)),
        host=host,
        port=port,
        ssl_certfile=str(certs.cert),
        ssl_keyfile=str(certs.key),
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_keep_alive=30,
        ws="none",
        timeout_graceful_shutdown=2,
    )


def start_in_thread(
    state: SimulatorState,
    *,
    cert_dir: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 15.0,
) -> RunningSimulator:
    """Serve `state` over HTTPS from a daemon thread; port 0 picks a free port."""
    certs = ensure_certificates(cert_dir or Path(tempfile.mkdtemp(prefix="roster-sim-")))
    server = _Server(_config(state, host, port, certs))
    thread = threading.Thread(target=server.run, name="graph-simulator", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the Graph simulator did not start")
        time.sleep(0.01)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    origin = f"https://{'[' + host + ']' if ':' in host else host}:{bound_port}"
    return RunningSimulator(origin, certs.ca, state, server, thread)


def run(
    host: str = "127.0.0.1",
    port: int = 8443,
    seed: int = 0,
    users: int = 200,
    groups: int = 30,
    contacts: int = 20,
    memberships: int | None = None,
    *,
    cert_dir: Path | None = None,
    tenant_id: str = "contoso",
    client_id: str = "roster-client",
    client_secret: str = "roster-secret",  # noqa: S107 - a test double's well-known secret
    page_size: int = 100,
    replay_rate: float = 0.0,
    rate_429: float = 0.0,
    rate_503: float = 0.0,
    announce: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Generate a tenant and serve it in the foreground until interrupted (`roster simulator`).

    `announce` receives the connection settings (the ROSTER_GRAPH__* values) before serving.
    """
    started = time.perf_counter()
    state = SimulatorState.seeded(
        TenantSpec(tenant_id, users, groups, contacts, memberships),
        seed=seed,
        tenant_id=tenant_id,
        client_id=client_id,
        client_secret=client_secret,
        page_size=page_size,
        replay_rate=replay_rate,
    )
    state.set_throttling(rate_429=rate_429, rate_503=rate_503)
    certs = ensure_certificates(cert_dir or Path(".roster-simulator"), (host,))
    origin = f"https://{'[' + host + ']' if ':' in host else host}:{port}"
    logger.info(
        "graph simulator ready: tenant=%s origin=%s ca_file=%s generated_in=%.1fs counts=%s",
        tenant_id, origin, certs.ca, time.perf_counter() - started, state.snapshot(),
    )  # fmt: skip
    if announce is not None:
        announce(
            {
                "tenant_id": tenant_id,
                "client_id": client_id,
                "client_secret": client_secret,
                "base_url": f"{origin}/v1.0",
                "authority_host": origin,
                "ca_bundle": str(certs.ca.resolve()),
                "control_url": f"{origin}/_control",
                **state.snapshot(),
            }
        )
    uvicorn.Server(_config(state, host, port, certs)).run()
