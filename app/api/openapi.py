"""The OpenAPI document says what the API really returns: every error uses the one error shape.

FastAPI documents request-validation failures with its own `HTTPValidationError` schema, but
Roster renders them as `{"error", "detail"}` (app/api/responses.py); contract-testing tools would
flag every 422. Here the document is rewritten to match, and the answers no route declares
itself are added where they can happen: 503 `DatabaseUnavailable` wherever an API key is checked
(the check may need the database), 413 wherever a body is accepted (app/api/limits.py), 400
wherever a body that does not parse can be sent, and the `Retry-After` header on every 503 (and
on the 429 of `/v1/auth/verify`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.api.responses import RETRY_AFTER

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_ERROR_SCHEMA = {
    "title": "ErrorBody",
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
}
_RETRY_AFTER = {
    "description": "Seconds to wait before trying again",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "examples": [RETRY_AFTER]},
}
_BODY_METHODS = {"post", "put", "patch"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


def complete(operation: dict[str, Any], method: str) -> None:
    """Add the answers every route of this kind can give, whether or not it declares them."""
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if "422" in responses or operation.get("parameters") or "requestBody" in operation:
        responses["422"] = _error("Invalid request")
    if method in _BODY_METHODS:
        responses.setdefault("413", _error("Request body too large; nothing was applied"))
    if "requestBody" in operation:
        responses.setdefault("400", _error("Malformed: the body cannot be parsed"))
    if "401" in responses:
        responses.setdefault(
            "503", _error("The database is unavailable; nothing was changed, retry later")
        )
    for code in ("429", "503"):
        if code in responses:
            responses[code].setdefault("headers", {})["Retry-After"] = _RETRY_AFTER


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        components = spec.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault("ErrorBody", _ERROR_SCHEMA)
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        for path in spec.get("paths", {}).values():
            for method, operation in path.items():
                complete(operation, method)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override
