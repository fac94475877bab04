"""The simulated directory: live and soft-deleted objects, memberships, a change log per resource.

Objects are plain Graph-shaped dicts that are replaced, never edited in place, so a delta session
can hold references to them. Members are insertion-ordered dicts (O(1) add/remove) with a reverse
index built on first need; a first round copies them once, which costs ~30 ms per million edges.
The log position is what a delta token encodes (Graph: "Use delta query to track changes in
Microsoft Graph data", https://learn.microsoft.com/graph/delta-query-overview).
"""

from __future__ import annotations

import random
import threading
import uuid
from dataclasses import dataclass
from typing import Any

RESOURCES = ("users", "groups", "contacts")
ODATA_TYPES = {
    "users": "#microsoft.graph.user",
    "groups": "#microsoft.graph.group",
    "contacts": "#microsoft.graph.orgContact",
}


class UnknownObject(KeyError):
    """No live (or soft-deleted, where that is asked for) object has this id."""


@dataclass(frozen=True, slots=True)
class LogEntry:
    op: str  # "upsert", "soft", "hard", "add" (member), "remove" (member)
    obj_id: str
    fields: frozenset[str] | None = None  # changed properties of an upsert; None = all
    member_id: str | None = None


class DirectoryStore:
    """Thread-safe: the server thread pages through it while tests mutate it."""

    def __init__(self, seed: int = 0) -> None:
        self.lock = threading.RLock()
        self.rng = random.Random(seed)  # noqa: S311 - reproducible tenants, not secrets
        self.live: dict[str, dict[str, dict[str, Any]]] = {r: {} for r in RESOURCES}
        self.soft_deleted: dict[str, dict[str, dict[str, Any]]] = {r: {} for r in RESOURCES}
        self.members: dict[str, dict[str, None]] = {}  # group id -> ordered member ids
        self.resource_of: dict[str, str] = {}
        self.logs: dict[str, list[LogEntry]] = {r: [] for r in RESOURCES}
        self.domains: list[dict[str, Any]] = []
        self._memberships_of_deleted: dict[str, list[str]] = {}
        self._member_of: dict[str, set[str]] | None = None  # member id -> group ids, lazily

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    # ---- loading (generator): no log entries, the state simply exists before any round
    def load(self, resource: str, obj: dict[str, Any]) -> None:
        self.live[resource][obj["id"]] = obj
        self.resource_of[obj["id"]] = resource

    # ---- objects
    def get(self, obj_id: str) -> dict[str, Any]:
        with self.lock:
            resource = self.resource_of.get(obj_id)
            if resource is None or obj_id not in self.live[resource]:
                raise UnknownObject(obj_id)
            return self.live[resource][obj_id]

    def create(self, resource: str, props: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            obj = {"id": props.get("id") or self.new_id(), **props}
            if obj["id"] in self.resource_of:
                raise ValueError(f"id {obj['id']} already exists")
            self.live[resource][obj["id"]] = obj
            self.resource_of[obj["id"]] = resource
            if resource == "groups":
                self.members.setdefault(obj["id"], {})
            self.logs[resource].append(LogEntry("upsert", obj["id"]))
            return obj

    def update(self, obj_id: str, props: dict[str, Any]) -> dict[str, Any]:
        """Replace the given properties; a value of None clears one, as Graph reports it."""
        with self.lock:
            old = self.get(obj_id)
            resource = self.resource_of[obj_id]
            new = {**old, **{k: v for k, v in props.items() if k != "id"}}
            self.live[resource][obj_id] = new
            changed = frozenset(k for k in props if k != "id")
            self.logs[resource].append(LogEntry("upsert", obj_id, fields=changed))
            return new

    def delete(self, obj_id: str, *, hard: bool = False) -> None:
        """Soft delete keeps the object restorable (30 days in Entra); hard delete forgets it."""
        with self.lock:
            resource = self.resource_of.get(obj_id)
            if resource is None:
                raise UnknownObject(obj_id)
            if obj_id in self.live[resource]:
                obj = self.live[resource].pop(obj_id)
                self._memberships_of_deleted[obj_id] = self._drop_memberships(obj_id)
                if not hard:
                    self.soft_deleted[resource][obj_id] = obj
            elif obj_id in self.soft_deleted[resource]:
                if not hard:
                    return
                del self.soft_deleted[resource][obj_id]
            else:
                raise UnknownObject(obj_id)
            if hard:  # resource_of keeps the id: a later members@delta removal still needs its type
                self._memberships_of_deleted.pop(obj_id, None)
            self.logs[resource].append(LogEntry("hard" if hard else "soft", obj_id))

    def restore(self, obj_id: str) -> dict[str, Any]:
        """Entra restores a soft-deleted object together with its group memberships."""
        with self.lock:
            resource = self.resource_of.get(obj_id)
            if resource is None or obj_id not in self.soft_deleted[resource]:
                raise UnknownObject(obj_id)
            obj = self.soft_deleted[resource].pop(obj_id)
            self.live[resource][obj_id] = obj
            self.logs[resource].append(LogEntry("upsert", obj_id))
            for group_id in self._memberships_of_deleted.pop(obj_id, []):
                if group_id in self.live["groups"]:
                    self.add_member(group_id, obj_id)
            return obj

    # ---- addresses
    def add_alias(self, obj_id: str, address: str) -> dict[str, Any]:
        with self.lock:
            proxies = list(self.get(obj_id).get("proxyAddresses") or [])
            proxies.append(f"smtp:{address}")
            return self.update(obj_id, {"proxyAddresses": proxies})

    def remove_alias(self, obj_id: str, address: str) -> dict[str, Any]:
        with self.lock:
            proxies = [
                p
                for p in self.get(obj_id).get("proxyAddresses") or []
                if not (p.lower().startswith("smtp:") and p[5:].lower() == address.lower())
            ]
            return self.update(obj_id, {"proxyAddresses": proxies})

    def set_primary(self, obj_id: str, address: str) -> dict[str, Any]:
        """Like changing `mail` in Exchange: the old primary stays as an alias."""
        with self.lock:
            proxies = []
            for p in self.get(obj_id).get("proxyAddresses") or []:
                if p.startswith("SMTP:"):
                    p = "smtp:" + p[5:]
                if not (p.lower().startswith("smtp:") and p[5:].lower() == address.lower()):
                    proxies.append(p)
            proxies.insert(0, f"SMTP:{address}")
            return self.update(obj_id, {"mail": address, "proxyAddresses": proxies})

    # ---- memberships
    def add_member(self, group_id: str, member_id: str) -> None:
        with self.lock:
            if group_id not in self.live["groups"]:
                raise UnknownObject(group_id)
            if member_id not in self.resource_of:
                raise UnknownObject(member_id)
            current = self.members.setdefault(group_id, {})
            if member_id in current:
                return
            current[member_id] = None
            if self._member_of is not None:
                self._member_of.setdefault(member_id, set()).add(group_id)
            self.logs["groups"].append(LogEntry("add", group_id, member_id=member_id))

    def remove_member(self, group_id: str, member_id: str) -> None:
        with self.lock:
            current = self.members.get(group_id, {})
            if member_id not in current:
                return
            del current[member_id]
            if self._member_of is not None:
                self._member_of.get(member_id, set()).discard(group_id)
            self.logs["groups"].append(LogEntry("remove", group_id, member_id=member_id))

    def _drop_memberships(self, obj_id: str) -> list[str]:
        """A deleted member leaves every group (reported as members@delta removals)."""
        if self._member_of is None:  # one O(edges) pass, then kept up to date
            index: dict[str, set[str]] = {}
            for gid, members in self.members.items():
                for member in members:
                    index.setdefault(member, set()).add(gid)
            self._member_of = index
        groups = sorted(self._member_of.get(obj_id, ()))
        for gid in groups:
            self.remove_member(gid, obj_id)
        if obj_id in self.members:  # a deleted group loses its members silently
            for member in self.members[obj_id]:
                self._member_of.get(member, set()).discard(obj_id)
            self.members[obj_id] = {}
        return groups

    # ---- domains
    def accepted_domains(self) -> frozenset[str]:
        """Graph domain resource: accepted = isVerified and 'Email' in supportedServices."""
        return frozenset(
            d["id"].lower()
            for d in self.domains
            if d.get("isVerified") and "Email" in (d.get("supportedServices") or [])
        )

    def expected_accepted(self) -> dict[str, str]:
        """The oracle for tests: lower-cased accepted address -> lower-cased primary address."""
        accepted = self.accepted_domains()
        result: dict[str, str] = {}
        with self.lock:
            for resource in RESOURCES:
                for obj in self.live[resource].values():
                    if resource == "groups" and not obj.get("mailEnabled"):
                        continue
                    smtp = [
                        p[5:] for p in obj.get("proxyAddresses") or [] if p[:5].lower() == "smtp:"
                    ]
                    primary = next(
                        (p[5:] for p in obj.get("proxyAddresses") or [] if p.startswith("SMTP:")),
                        obj.get("mail"),
                    )
                    if obj.get("mail"):
                        smtp.append(obj["mail"])
                    kept = [
                        a.lower()
                        for a in smtp
                        if "#ext#" not in a.lower() and a.rpartition("@")[2].lower() in accepted
                    ]
                    # A primary outside the accepted domains (a contact's external address) is
                    # not reported: the first accepted address, in proxyAddresses order, stands in.
                    main = (primary or "").lower()
                    main = main if main in kept else (kept[0] if kept else "")
                    for address in kept:
                        result[address] = main
        return result
