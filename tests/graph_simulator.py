"""One Graph simulator server per test session; every test gets a fresh tenant on it.

Starting and stopping a simulator costs ~0.3 s, paid by a hundred tests or more. Isolation does
not come from the server but from the state: `SimulatorServer.serve` routes the session's server
to a new `SimulatorState` (with its own app), so nothing of an earlier test's tenant, tokens,
throttling or faults remains. A test that makes Graph go away (`simulator.stop()`) asks for a
server of its own with `@pytest.mark.private_simulator`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from app.simulator.graph import RunningSimulator, SimulatorState, start_in_thread
from app.simulator.graph.app import create_simulator_app, wrap_asgi
from app.simulator.graph.certs import ensure_certificates

PRIVATE = "private_simulator"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{PRIVATE}: the test stops its Graph simulator, so it gets its own server"
    )


class _Switch:
    """The session server's ASGI app: hands each request to the current test's simulator."""

    def __init__(self) -> None:
        self.target: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        target = self.target
        if target is None:  # between tests: nobody should be calling
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await target(scope, receive, send)


class SharedSimulator(RunningSimulator):
    """A test's view of the session server; stopping it would break the tests after it."""

    __slots__ = ()

    def stop(self, timeout: float = 10.0) -> None:
        raise RuntimeError(f"the session's simulator cannot be stopped: mark the test {PRIVATE}")


@dataclass
class SimulatorServer:
    cert_dir: Path
    switch: _Switch = field(default_factory=_Switch)
    origin: str = ""
    ca_file: Path = Path()
    _server: Any = None
    _thread: threading.Thread | None = None

    def start(self, startup_timeout: float = 30.0) -> None:
        certs = ensure_certificates(self.cert_dir)
        config = uvicorn.Config(
            self.switch,
            host="127.0.0.1",
            port=0,
            ssl_certfile=str(certs.cert),
            ssl_keyfile=str(certs.key),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            ws="none",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, name="graph-simulator-session", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + startup_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the session's Graph simulator did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.origin, self.ca_file = f"https://127.0.0.1:{port}", certs.ca

    def serve(self, state: SimulatorState) -> RunningSimulator:
        self.switch.target = wrap_asgi(create_simulator_app(state))
        assert self._thread is not None
        return SharedSimulator(self.origin, self.ca_file, state, self._server, self._thread)

    def idle(self) -> None:
        self.switch.target = None

    def close(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)


@pytest.fixture(scope="session")
def simulator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorServer]:
    server = SimulatorServer(tmp_path_factory.mktemp("graph-sim-certs"))
    server.start()
    yield server
    server.close()


@contextlib.contextmanager
def running_simulator(
    request: pytest.FixtureRequest, server: SimulatorServer, state: SimulatorState
) -> Iterator[RunningSimulator]:
    """`state` served for one test: on the session server, or on its own for PRIVATE tests."""
    if request.node.get_closest_marker(PRIVATE) is not None:
        private = start_in_thread(state, cert_dir=server.cert_dir)
        try:
            yield private
        finally:
            private.stop()
        return
    try:
        yield server.serve(state)
    finally:
        server.idle()
