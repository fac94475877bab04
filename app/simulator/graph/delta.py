"""Delta rounds over the store: sessions, Graph-shaped pages, opaque skip and delta tokens.

Behaviour follows Microsoft Learn "Use delta query to track changes in Microsoft Graph data"
(https://learn.microsoft.com/graph/delta-query-overview), "user: delta" and "group: delta"
(https://learn.microsoft.com/graph/api/group-delta): a first round returns the current state page by
page, large groups' `members@delta` come back in slices on later pages, `@removed` carries
`changed` (soft delete) or `deleted`, and only `$select`ed properties are tracked.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.simulator.graph.store import ODATA_TYPES, DirectoryStore
from app.simulator.graph.tokens import TokenCodec, TokenError

# Properties Graph returns for users/delta without $select (the user resource's default set).
DEFAULT_USER_PROPERTIES = (
    "id", "businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
    "officeLocation", "preferredLanguage", "surname", "userPrincipalName",
)  # fmt: skip
MAX_SESSIONS = 512


class SyncStateError(Exception):
    """The token is expired or was never issued: `code` is the Graph error code to answer with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class Item:
    obj_id: str
    removed: str | None = None  # "changed" or "deleted"
    adds: Sequence[str] = ()
    removes: Sequence[str] = ()
    has_members: bool = False


@dataclass(slots=True)
class Session:
    resource: str
    items: list[Item]
    end: int  # log position the final deltaLink will carry
    select: tuple[str, ...] | None
    generation: int
    replayed: set[int] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Page:
    values: list[dict[str, Any]]
    next_token: str | None  # $skiptoken
    delta_token: str | None  # $deltatoken


class DeltaEngine:
    def __init__(
        self,
        store: DirectoryStore,
        *,
        page_size: int = 100,
        members_page_size: int = 100,
        replay_rate: float = 0.0,
    ) -> None:
        self.store = store
        self.page_size = page_size
        self.members_page_size = members_page_size
        self.replay_rate = replay_rate
        self.codec = TokenCodec(secrets.token_bytes(16))
        self.generation = 0
        self.expiry_code = "syncStateNotFound"
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def expire_tokens(self, code: str = "syncStateNotFound") -> None:
        """Every token issued so far fails with `code` (syncStateNotFound or resyncRequired)."""
        with self.store.lock:
            self.generation += 1
            self.expiry_code = code
            self._sessions.clear()

    # ---- entry points
    def start(self, resource: str, select: Sequence[str] | None, delta_token: str | None) -> Page:
        with self.store.lock:
            sel = _normalize_select(select)
            if delta_token == "latest":  # noqa: S105 - the documented literal
                end = len(self.store.logs[resource])
                return Page([], None, self._delta_token(resource, end, sel))
            if delta_token:
                payload = self._decode(delta_token, "d")
                if payload["r"] != resource:
                    raise SyncStateError(
                        "badRequest", "The delta token belongs to another resource."
                    )
                sel = tuple(payload["sel"]) if payload["sel"] is not None else None
                items = self._changes(resource, payload["p"], sel)
            else:
                items = self._current(resource, sel)
            session = Session(resource, items, len(self.store.logs[resource]), sel, self.generation)
            sid = secrets.token_hex(8)
            self._sessions[sid] = session
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
            return self._page(sid, session, 0)

    def resume(self, resource: str, skip_token: str) -> Page:
        with self.store.lock:
            payload = self._decode(skip_token, "s")
            session = self._sessions.get(payload["sid"])
            if session is None or session.resource != resource:
                raise SyncStateError(self.expiry_code, _EXPIRED)
            return self._page(payload["sid"], session, payload["o"])

    def initial_link_query(self, delta_token: str) -> str:
        """The query of a fresh round with the same $select, for a 410's Location header."""
        payload = self.codec.decode(delta_token)
        sel = payload.get("sel")
        return f"$select={','.join(sel)}" if sel else ""

    # ---- internals
    def _decode(self, token: str, kind: str) -> dict[str, Any]:
        try:
            payload = self.codec.decode(token)
        except TokenError as exc:
            raise SyncStateError("badRequest", "The token is not valid.") from exc
        if payload.get("k") != kind:
            raise SyncStateError("badRequest", "The token is not valid.")
        if payload["g"] < self.generation:
            raise SyncStateError(self.expiry_code, _EXPIRED)
        return payload

    def _delta_token(self, resource: str, end: int, sel: tuple[str, ...] | None) -> str:
        return self.codec.encode(
            {"k": "d", "r": resource, "p": end, "g": self.generation, "sel": sel}
        )

    def _current(self, resource: str, sel: tuple[str, ...] | None) -> list[Item]:
        store = self.store
        items: list[Item] = []
        with_members = resource == "groups" and (sel is None or "members" in sel)
        if not with_members:
            items = [Item(obj_id) for obj_id in store.live[resource]]
        else:
            # First slice in directory order, later slices round-robin at the end, so a large
            # group's members are spread over pages "anywhere in the chain".
            size = self.members_page_size
            rest: list[list[Item]] = []
            for obj_id in store.live[resource]:
                members = list(store.members.get(obj_id) or ())  # the round's snapshot
                items.append(Item(obj_id, adds=members[:size], has_members=bool(members)))
                if len(members) > size:
                    rest.append(
                        [Item(obj_id, adds=members[i : i + size], has_members=True)
                         for i in range(size, len(members), size)]
                    )  # fmt: skip
            while rest:
                rest = [slices for slices in rest if slices]
                for slices in rest:
                    items.append(slices.pop(0))
        # Soft-deleted objects show up as removed in first rounds too.
        items.extend(Item(obj_id, removed="changed") for obj_id in store.soft_deleted[resource])
        return items

    def _changes(self, resource: str, position: int, sel: tuple[str, ...] | None) -> list[Item]:
        store = self.store
        selected = frozenset(sel) if sel else None
        order: dict[str, None] = {}
        touched: set[str] = set()
        member_ops: dict[str, dict[str, bool]] = {}
        for entry in store.logs[resource][position:]:
            if entry.op in ("add", "remove"):
                assert entry.member_id is not None  # noqa: S101
                member_ops.setdefault(entry.obj_id, {})[entry.member_id] = entry.op == "add"
            elif (
                entry.op == "upsert"
                and selected is not None
                and entry.fields is not None
                and not entry.fields & selected
            ):
                continue  # only selected properties are tracked
            else:
                touched.add(entry.obj_id)
            order.setdefault(entry.obj_id)
        with_members = resource == "groups" and (sel is None or "members" in sel)
        items: list[Item] = []
        size = self.members_page_size
        for obj_id in order:
            if obj_id not in store.live[resource]:
                reason = "changed" if obj_id in store.soft_deleted[resource] else "deleted"
                items.append(Item(obj_id, removed=reason))
                continue
            ops = member_ops.get(obj_id) if with_members else None
            if not ops:
                if obj_id in touched:
                    items.append(Item(obj_id))
                continue
            pairs = list(ops.items())
            for i in range(0, len(pairs), size):
                chunk = pairs[i : i + size]
                items.append(
                    Item(
                        obj_id,
                        adds=[m for m, added in chunk if added],
                        removes=[m for m, added in chunk if not added],
                        has_members=True,
                    )
                )
        return items

    def _page(self, sid: str, session: Session, offset: int) -> Page:
        chunk = session.items[offset : offset + self.page_size]
        values: list[dict[str, Any]] = []
        if offset and offset not in session.replayed and self.store.rng.random() < self.replay_rate:
            session.replayed.add(offset)  # "be prepared for replays": repeat the previous object
            values.append(self._render(session, session.items[offset - 1]))
        values.extend(self._render(session, item) for item in chunk)
        values = [v for v in values if v]
        nxt = offset + self.page_size
        if nxt < len(session.items):
            token = self.codec.encode({"k": "s", "sid": sid, "o": nxt, "g": session.generation})
            return Page(values, token, None)
        self._sessions.pop(sid, None)
        return Page(values, None, self._delta_token(session.resource, session.end, session.select))

    def _render(self, session: Session, item: Item) -> dict[str, Any]:
        if item.removed:
            return {"id": item.obj_id, "@removed": {"reason": item.removed}}
        obj = self.store.live[session.resource].get(item.obj_id)
        if obj is None:
            return {}  # deleted after the round started: the next round reports it
        sel = session.select
        if sel is None and session.resource == "users":
            sel = DEFAULT_USER_PROPERTIES
        out = dict(obj) if sel is None else {k: obj.get(k) for k in sel if k != "members"}
        out["id"] = item.obj_id
        if item.has_members:
            kinds = self.store.resource_of
            delta: list[dict[str, Any]] = [
                {"@odata.type": ODATA_TYPES[kinds.get(m, "users")], "id": m} for m in item.adds
            ]
            delta.extend(
                {
                    "@odata.type": ODATA_TYPES[kinds.get(m, "users")],
                    "id": m,
                    "@removed": {"reason": "deleted"},
                }
                for m in item.removes
            )
            out["members@delta"] = delta
        return out


_EXPIRED = (
    "The sync state generation is not found. The delta token is expired and data must be "
    "synchronized again."
)


def _normalize_select(select: Sequence[str] | None) -> tuple[str, ...] | None:
    if not select:
        return None
    names = [s.strip() for s in select if s.strip()]
    if "id" not in names:
        names.insert(0, "id")
    return tuple(dict.fromkeys(names))
