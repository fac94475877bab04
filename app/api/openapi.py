"""The OpenAPI document says what the API really returns: every error uses the one error shape.

FastAPI documents request-validation failures with its own `HTTPValidationError` schema, but
Roster renders them as `{"error", "detail"}` (app/api/errors.py); contract-testing tools would
flag every 422. Here the document is rewritten to match.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_ERROR_SCHEMA = {
    "title": "ErrorBody",
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
}


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
            for operation in path.values():
                responses = operation.get("responses", {})
                if "422" in responses or operation.get("parameters") or "requestBody" in operation:
                    responses["422"] = {
                        "description": "Invalid request",
                        "content": {"application/json": {"schema": _ERROR_REF}},
                    }
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override
