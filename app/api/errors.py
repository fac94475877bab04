"""Every error leaves the API as {"error": "<Kind>", "detail": "<message>"}."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.responses import JsonResponse
from app.api.schemas import ErrorBody
from app.errors import RosterError

logger = logging.getLogger(__name__)


def error_response(status: int, kind: str, detail: str, **headers: str) -> JsonResponse:
    return JsonResponse({"error": kind, "detail": detail}, status_code=status, headers=headers)


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route really returns."""
    return {code: {"model": ErrorBody} for code in codes}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RosterError)
    async def _roster(_: Request, exc: RosterError) -> JsonResponse:
        headers = {"Retry-After": "30"} if exc.status_code == 503 else {}
        return error_response(exc.status_code, type(exc).__name__, exc.message, **headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JsonResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return error_response(422, "InvalidInput", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JsonResponse:
        kind = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}.get(
            exc.status_code, "HTTPError"
        )
        return error_response(exc.status_code, kind, str(exc.detail))

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    async def _database(_: Request, exc: Exception) -> JsonResponse:
        logger.error("database error, request not applied: %s", type(exc).__name__)
        return error_response(
            503,
            "DatabaseUnavailable",
            "the database is unavailable; nothing was changed",
            **{"Retry-After": "30"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JsonResponse:
        logger.exception("unexpected error: %s", type(exc).__name__)
        return error_response(500, "InternalError", "internal error; see the server log")
