"""The simulator's HTTP surface: identity platform endpoints, Graph `/v1.0` routes, control API.

Graph shapes follow Microsoft Learn "user: delta" (https://learn.microsoft.com/graph/api/user-delta),
"group: delta" (https://learn.microsoft.com/graph/api/group-delta), "orgContact: delta",
"List domains" and "Microsoft Graph error responses and resource types"
(https://learn.microsoft.com/graph/errors).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI, Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.simulator.graph.auth import AuthError
from app.simulator.graph.control import control_router
from app.simulator.graph.delta import Page, SyncStateError
from app.simulator.graph.state import SimulatorState, Throttle
from app.simulator.graph.store import RESOURCES
from app.simulator.graph.subscriptions import subscriptions_router

JSON = "application/json"
_SLASHES = re.compile(r"/{2,}")


def create_simulator_app(state: SimulatorState) -> FastAPI:
    app = FastAPI(title="Roster Graph simulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sim = state

    @app.post("/{tenant}/oauth2/v2.0/token")
    async def token(tenant: str, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True))
        if tenant not in (state.tenant_id, "organizations", "common"):
            return _json({"error": "invalid_tenant", "error_description": "AADSTS90002: Tenant "
                          "not found."}, 400)  # fmt: skip
        token_url = f"{_origin(request)}/{tenant}/oauth2/v2.0/token"
        try:
            return _json(state.auth.issue(form, token_url))
        except AuthError as exc:
            return _json({"error": exc.error, "error_description": exc.description}, exc.status)

    @app.get("/{tenant}/v2.0/.well-known/openid-configuration")
    async def openid_configuration(tenant: str, request: Request) -> Response:
        origin = _origin(request)
        return _json({
            "token_endpoint": f"{origin}/{tenant}/oauth2/v2.0/token",
            "authorization_endpoint": f"{origin}/{tenant}/oauth2/v2.0/authorize",
            "issuer": f"{origin}/{tenant}/v2.0",
            "jwks_uri": f"{origin}/{tenant}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            "response_types_supported": ["code", "id_token", "token"],
            "tenant_region_scope": "EU",
        })  # fmt: skip

    @app.get("/common/discovery/instance")
    async def instance_discovery(request: Request) -> Response:
        host = request.url.netloc
        origin = _origin(request)
        return _json({
            "tenant_discovery_endpoint":
                f"{origin}/{state.tenant_id}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        })  # fmt: skip

    for suffix in ("delta", "delta()", "microsoft.graph.delta"):
        app.add_api_route(f"/v1.0/{{resource}}/{suffix}", _delta_route, methods=["GET"])

    @app.get("/v1.0/domains")
    async def domains(request: Request) -> Response:
        if (denied := _guard(request)) is not None:
            return denied
        return _json({"@odata.context": f"{_origin(request)}/v1.0/$metadata#domains",
                      "value": state.store.domains})  # fmt: skip

    app.include_router(subscriptions_router(state))  # also hooks the change log
    app.include_router(control_router(state))
    return app


def wrap_asgi(app: ASGIApp) -> ASGIApp:
    """Collapse `//` in paths: an httpx base_url makes the stock SDK send `/v1.0//users/...`."""

    async def normalized(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "//" in scope["path"]:
            scope = dict(scope)
            scope["path"] = _SLASHES.sub("/", scope["path"])
        await app(scope, receive, send)

    return normalized


async def _delta_route(resource: str, request: Request) -> Response:
    state: SimulatorState = request.app.state.sim
    if resource not in RESOURCES:
        return _graph_error(404, "Request_ResourceNotFound", f"Resource '{resource}' not found.")
    if (denied := _guard(request)) is not None:
        return denied
    query = request.query_params
    base = f"{_origin(request)}/v1.0/{resource}/delta"
    try:
        if skip := query.get("$skiptoken"):
            page = state.delta.resume(resource, skip)
        else:
            select = query.get("$select")
            delta_token = query.get("$deltatoken")
            page = state.delta.start(resource, select.split(",") if select else None, delta_token)
    except SyncStateError as exc:
        if exc.code == "resyncRequired":
            # 410 Gone + Location of a fresh round (Graph error responses: resyncRequired).
            token = query.get("$deltatoken") or ""
            extra = state.delta.initial_link_query(token) if token else ""
            response = _graph_error(410, exc.code, exc.message)
            response.headers["Location"] = f"{base}?{extra}" if extra else base
            return response
        return _graph_error(400, exc.code, exc.message)
    return _render_page(state, resource, base, page, _origin(request))


def _render_page(
    state: SimulatorState, resource: str, base: str, page: Page, origin: str
) -> Response:
    body: dict[str, Any] = {"@odata.context": f"{origin}/v1.0/$metadata#{resource}"}
    if page.next_token:
        body["@odata.nextLink"] = f"{base}?$skiptoken={page.next_token}"
    else:
        body["@odata.deltaLink"] = f"{base}?$deltatoken={page.delta_token}"
    body["value"] = page.values
    corruption = state.next_corruption()
    if corruption == "not_json":
        return Response(b"<html><body>upstream proxy error</body></html>", 200, media_type=JSON)
    if corruption == "html_error":
        return Response(b"<html><body>502 Bad Gateway</body></html>", 502, media_type="text/html")
    if corruption == "missing_value":
        del body["value"]
    elif corruption == "missing_id" and body["value"]:
        body["value"][0] = {k: v for k, v in body["value"][0].items() if k != "id"}
    elif corruption == "foreign_link":
        for key in ("@odata.nextLink", "@odata.deltaLink"):
            if key in body:
                body[key] = body[key].replace(origin, "https://graph.attacker.example", 1)
    return Response(orjson.dumps(body), media_type=JSON)


def _guard(request: Request) -> Response | None:
    """401 without a valid bearer token, then injected throttling, as Graph checks them."""
    state: SimulatorState = request.app.state.sim
    if not state.auth.is_valid(request.headers.get("authorization")):
        return _graph_error(401, "InvalidAuthenticationToken", "Access token validation failure.")
    throttle: Throttle | None = state.next_throttle()
    if throttle is None:
        return None
    code = {429: "TooManyRequests", 503: "serviceNotAvailable", 504: "gatewayTimeout"}.get(
        throttle.status, "generalException"
    )
    response = _graph_error(throttle.status, code, "Please retry after the delay.")
    if throttle.retry_after is not None:
        response.headers["Retry-After"] = str(throttle.retry_after)
    return response


def _graph_error(status: int, code: str, message: str) -> Response:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    inner = {"date": now, "request-id": str(uuid.uuid4()), "client-request-id": str(uuid.uuid4())}
    body = {"error": {"code": code, "message": message, "innerError": inner}}
    return Response(orjson.dumps(body), status, media_type=JSON)


def _json(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status, media_type=JSON)


def _origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"
