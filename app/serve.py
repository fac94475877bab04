"""`roster serve`: uvicorn with uvloop and httptools, the lookup fast path in front of FastAPI."""

from __future__ import annotations

import logging

import uvicorn

from app.logging import configure_logging
from app.main import create_asgi
from app.settings import Settings

logger = logging.getLogger(__name__)


def run_server(settings: Settings, *, host: str, port: int) -> None:
    configure_logging()
    app = create_asgi(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
    )
    logger.info("roster http api listening: url=http://%s:%d docs=/docs", host, port)
    uvicorn.Server(config).run()
