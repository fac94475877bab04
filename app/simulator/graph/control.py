"""`/_control/...`: JSON routes mirroring `SimulatorState` methods, for demos and other processes.

No authentication: the simulator listens on loopback by default and is a test double.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, HTTPException, Response

from app.simulator.graph.state import SimulatorState
from app.simulator.graph.store import UnknownObject

Payload = dict[str, Any]


def control_router(state: SimulatorState) -> APIRouter:
    router = APIRouter(prefix="/_control")

    def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UnknownObject as exc:
            raise HTTPException(404, f"unknown object {exc.args[0]}") from exc
        except (ValueError, KeyError) as exc:
            raise HTTPException(422, str(exc)) from exc

    @router.get("/state")
    def snapshot() -> Payload:
        return state.snapshot()

    @router.get("/expected")
    def expected() -> dict[str, str]:
        return state.expected_accepted()

    @router.get("/sample")
    def sample(n: int = 100) -> Payload:
        """Up to `n` mail users, groups and memberships (ids), for load generators."""
        store = state.store
        with store.lock:
            users = [
                {"id": u["id"], "mail": u["mail"]}
                for u in store.live["users"].values()
                if u.get("mail") and u.get("userType") != "Guest"
            ][:n]
            groups = list(store.live["groups"])[:n]
            memberships = [
                [gid, member] for gid in groups for member in list(store.members.get(gid, {}))[:1]
            ][:n]
        return {"users": users, "groups": groups, "memberships": memberships}

    @router.post("/{resource}", status_code=201)
    def create(resource: str, body: Payload = Body(...)) -> Payload:
        makers = {"users": state.add_user, "groups": state.add_group, "contacts": state.add_contact}
        if resource not in makers:
            raise HTTPException(404, "unknown resource")
        result: Payload = call(makers[resource], **body)
        return result

    @router.patch("/objects/{obj_id}")
    def update(obj_id: str, body: Payload = Body(...)) -> Payload:
        result: Payload = call(state.update, obj_id, **body)
        return result

    @router.delete("/objects/{obj_id}", status_code=204)
    def delete(obj_id: str, hard: bool = False) -> Response:
        call(state.delete, obj_id, hard=hard)
        return Response(status_code=204)

    @router.post("/objects/{obj_id}/restore")
    def restore(obj_id: str) -> Payload:
        result: Payload = call(state.restore, obj_id)
        return result

    @router.post("/objects/{obj_id}/aliases")
    def add_alias(obj_id: str, body: Payload = Body(...)) -> Payload:
        result: Payload = call(state.add_alias, obj_id, body["address"])
        return result

    @router.delete("/objects/{obj_id}/aliases/{address}")
    def remove_alias(obj_id: str, address: str) -> Payload:
        result: Payload = call(state.remove_alias, obj_id, address)
        return result

    @router.post("/objects/{obj_id}/primary")
    def set_primary(obj_id: str, body: Payload = Body(...)) -> Payload:
        result: Payload = call(state.set_primary, obj_id, body["address"])
        return result

    @router.post("/groups/{group_id}/members", status_code=204)
    def add_member(group_id: str, body: Payload = Body(...)) -> Response:
        call(state.add_member, group_id, body["id"])
        return Response(status_code=204)

    @router.delete("/groups/{group_id}/members/{member_id}", status_code=204)
    def remove_member(group_id: str, member_id: str) -> Response:
        call(state.remove_member, group_id, member_id)
        return Response(status_code=204)

    @router.post("/faults/expire-delta-tokens", status_code=204)
    def expire(body: Payload = Body(default={})) -> Response:
        call(state.expire_delta_tokens, body.get("code", "syncStateNotFound"))
        return Response(status_code=204)

    @router.post("/faults/throttling", status_code=204)
    def throttling(body: Payload = Body(...)) -> Response:
        call(state.set_throttling, **body)
        return Response(status_code=204)

    @router.post("/faults/throttle-next", status_code=204)
    def throttle_next(body: Payload = Body(default={})) -> Response:
        call(state.throttle_next, **body)
        return Response(status_code=204)

    @router.post("/faults/corrupt-next", status_code=204)
    def corrupt_next(body: Payload = Body(...)) -> Response:
        call(state.corrupt_next, body["kind"])
        return Response(status_code=204)

    @router.post("/faults/revoke-tokens", status_code=204)
    def revoke_tokens() -> Response:
        state.revoke_tokens()
        return Response(status_code=204)

    return router
