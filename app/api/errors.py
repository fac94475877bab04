"""Every error leaves the API as {"error": "<Kind>", "detail": "<message>"} (app/api/responses.py).

The handlers here map exceptions onto that shape; a 503 always carries `Retry-After`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.responses import JsonResponse, error_response
from app.api.schemas import ErrorBody
from app.errors import RosterError

logger = logging.getLogger(__name__)

# Starlette's and FastAPI's own HTTP errors (a body that is not JSON is FastAPI's 400).
_HTTP_KINDS = {400: "Malformed", 404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route really returns (503s get `Retry-After`
    in app/api/openapi.py)."""
    return {code: {"model": ErrorBody} for code in codes}


class AllowedMethods:
    """`Allow` for a 405, from the OpenAPI document: Starlette names only the methods of the
    first route on the path, and FastAPI makes one route per method."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._table: list[tuple[re.Pattern[str], set[str]]] | None = None

    def __call__(self, path: str) -> str | None:
        if self._table is None:
            self._table = [
                (re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$"),
                 {method.upper() for method in operations})
                for template, operations in self.app.openapi()["paths"].items()
            ]  # fmt: skip
        methods = set().union(*(names for pattern, names in self._table if pattern.match(path)))
        if "GET" in methods:
            methods.add("HEAD")  # Starlette answers HEAD wherever it answers GET
        return ", ".join(sorted(methods)) or None


def install_error_handlers(app: FastAPI) -> None:
    allowed = AllowedMethods(app)

    @app.exception_handler(RosterError)
    async def _roster(_: Request, exc: RosterError) -> JsonResponse:
        return error_response(exc.status_code, type(exc).__name__, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JsonResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return error_response(422, "InvalidInput", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JsonResponse:
        kind = _HTTP_KINDS.get(exc.status_code, "HTTPError")
        headers = dict(exc.headers or {})
        if exc.status_code == 405 and (methods := allowed(request.url.path)):
            headers["Allow"] = methods
        return error_response(exc.status_code, kind, str(exc.detail), headers=headers)

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    async def _database(_: Request, exc: Exception) -> JsonResponse:
        logger.error("database error, request not applied: %s", type(exc).__name__)
        return error_response(
            503, "DatabaseUnavailable", "the database is unavailable; nothing was changed"
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JsonResponse:
        logger.exception("unexpected error: %s", type(exc).__name__)
        return error_response(500, "InternalError", "internal error; see the server log")
