"""Recipient lookups: the route gateways call for every RCPT."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response

from app.api.deps import IndexDep, LookupKey, ReadKey, SessionDep
from app.api.errors import responses
from app.api.lookup_http import render, safe_lookup
from app.api.responses import RawAnswer
from app.api.schemas import BatchAnswer, BatchLookup, LookupAnswer, LookupProblem, RecipientList
from app.directory import groups as group_service
from app.directory.recipients import describe, find_by_address

router = APIRouter(prefix="/v1/recipients", tags=["lookup"])

_LOOKUP_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": LookupAnswer, "description": "accept"},
    400: {"model": LookupProblem, "description": "malformed address (reason `malformed`)"},
    404: {"model": LookupProblem, "description": "reject: unknown recipient or domain not ours"},
    503: {
        "description": "tempfail: defer the mail (not ready, stale, unavailable). The lookup "
        "fields are there when the address was looked up; a failed API-key check has only "
        "`error` and `detail`",
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/LookupProblem"},
                        {"$ref": "#/components/schemas/ErrorBody"},
                    ]
                }
            }
        },
    },
    **responses(401, 403),
}


@router.get(
    "/{address}",
    responses=_LOOKUP_RESPONSES,
    response_model=LookupAnswer,
    summary="Is this address a valid recipient?",
)
async def lookup(address: str, index: IndexDep, request: Request, key: LookupKey) -> Response:
    """Answers from memory. Served by a raw-ASGI fast path in `roster serve`; same bytes here.
    A tenant key's lookups answer only for its tenants' domains (others: domain_not_accepted)."""
    result = safe_lookup(index, address, key.tenants)
    request.app.state.metrics.count_lookup("http", result.verdict.value)
    answer = render(result)
    return Response(answer.body, status_code=answer.status, headers=_str_headers(answer))


def _str_headers(answer: RawAnswer) -> dict[str, str]:
    """The fast path's headers but Content-Length, which Response computes from the body."""
    return {k.decode(): v.decode() for k, v in answer.headers if k != b"content-length"}


@router.post(
    "/lookup",
    responses=responses(401, 403, 422),
    summary="Look up to 1,000 addresses at once",
)
async def lookup_batch(
    body: BatchLookup, index: IndexDep, request: Request, key: LookupKey
) -> BatchAnswer:
    results = [safe_lookup(index, a, key.tenants) for a in body.addresses]
    metrics = request.app.state.metrics
    for result in results:
        metrics.count_lookup("http", result.verdict.value)
    return BatchAnswer(items=[LookupAnswer.model_validate(result.as_dict()) for result in results])


@router.get(
    "/{address}/groups",
    responses=responses(400, 401, 403, 404),
    summary="Groups an address belongs to",
)
async def groups_of_address(
    address: str, session: SessionDep, key: ReadKey, transitive: bool = Query(default=False)
) -> RecipientList:
    recipient = await find_by_address(session, address, key.tenants)
    found = await group_service.groups_of(session, recipient, transitive=transitive)
    found = [g for g in found if key.allows(g.tenant_id)]
    return RecipientList.model_validate(
        {"items": await describe(session, found), "total": len(found)}
    )
