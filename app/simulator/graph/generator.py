"""A seeded generator of realistic Microsoft 365 tenants for the simulator, demos and benchmarks.

It produces the address shapes a mirror must get right (Microsoft Learn "user resource type",
"orgContact resource type", "Working with groups in Microsoft Graph", "domain resource type"):
aliases in several verified domains, mixed case, disabled shared mailboxes, guests with `#EXT#`
UPNs and external mail, unlicensed users without mail, the four group kinds, nested groups,
contacts, an unverified domain and a domain without Email, and `SIP:`/`X500:`/`SPO:` proxies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.simulator.graph.store import DirectoryStore

FIRST = (
    "Alice", "Bob", "Carol", "David", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory",
    "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Uma", "Victor", "Walter", "Xena",
    "Yusuf", "Zoe", "Amir", "Chen", "Fatima", "Kenji", "Lars", "Priya", "Sofia",
)  # fmt: skip
LAST = (
    "Smith", "Jones", "Garcia", "Miller", "Davis", "Martinez", "Lopez", "Wilson", "Anderson",
    "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris",
    "Sanchez", "Clark", "Lewis", "Robinson", "Walker", "Young", "Nguyen", "Kim", "Novak", "Okafor",
)  # fmt: skip
DEPARTMENTS = ("Sales", "Finance", "Engineering", "Support", "Legal", "Marketing", "Operations")
EXTERNAL_DOMAINS = ("fabrikam.com", "gmail.com", "outlook.com", "northwind.example")


@dataclass(frozen=True, slots=True)
class TenantSpec:
    name: str = "contoso"
    users: int = 200
    groups: int = 30
    contacts: int = 20
    memberships: int | None = None  # total direct edges; default about 4 per user


def tenant_domains(name: str) -> list[dict[str, Any]]:
    """Verified Email domains, one verified domain without Email, one unverified domain."""

    def domain(did: str, *, verified: bool = True, services: tuple[str, ...] = ("Email",),
               default: bool = False, initial: bool = False) -> dict[str, Any]:  # fmt: skip
        return {
            "id": did, "authenticationType": "Managed", "isDefault": default,
            "isInitial": initial, "isRoot": True, "isVerified": verified,
            "supportedServices": list(services),
        }  # fmt: skip

    return [
        domain(f"{name}.com", default=True, services=("Email", "OfficeCommunicationsOnline")),
        domain(f"{name}.onmicrosoft.com", initial=True),
        domain(f"{name}.mail.onmicrosoft.com"),
        domain(f"{name}-brand.net"),
        domain(f"sso.{name}.com", services=("OrgIdAuthentication",)),
        domain(f"{name}-legacy.org", verified=False, services=()),
    ]


def generate(store: DirectoryStore, spec: TenantSpec) -> None:
    """Fill an empty store; the same seed (the store's RNG) always yields the same tenant."""
    rng = store.rng
    store.domains = tenant_domains(spec.name)
    primary_dom, initial_dom, routing_dom, brand_dom, sso_dom, legacy_dom = (
        d["id"] for d in store.domains
    )
    used: set[str] = set()

    def local_part(first: str, last: str) -> str:
        base = f"{first}.{last}"
        local, n = base, 1
        while local.lower() in used:
            n += 1
            local = f"{base}{n}"
        used.add(local.lower())
        return local

    def mixed(text: str) -> str:
        return text if rng.random() < 0.7 else text.upper() if rng.random() < 0.3 else text.lower()

    user_ids: list[str] = []
    for i in range(spec.users):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        local = local_part(first, last)
        uid = store.new_id()
        roll = rng.random()
        user: dict[str, Any] = {
            "id": uid, "displayName": f"{first} {last}", "givenName": first, "surname": last,
            "department": rng.choice(DEPARTMENTS), "jobTitle": None, "companyName": None,
            "officeLocation": None, "accountEnabled": True, "userType": "Member",
            "otherMails": [], "proxyAddresses": [], "mail": None, "mailNickname": local,
            "userPrincipalName": f"{local.lower()}@{primary_dom}",
        }  # fmt: skip
        if roll < 0.08:  # guest: #EXT# UPN, external mail, never a tenant address
            ext = f"{local.lower()}@{rng.choice(EXTERNAL_DOMAINS)}"
            user |= {
                "userType": "Guest", "mail": ext, "otherMails": [ext],
                "userPrincipalName": f"{ext.replace('@', '_')}#EXT#@{initial_dom}",
                "proxyAddresses": [f"SMTP:{ext}"],
            }  # fmt: skip
        elif roll < 0.15:  # unlicensed user: UPN only, no mailbox
            user["otherMails"] = [f"{local.lower()}@{rng.choice(EXTERNAL_DOMAINS)}"]
        else:
            domain = brand_dom if rng.random() < 0.1 else primary_dom
            mail = f"{mixed(local)}@{domain}"
            proxies = [f"SMTP:{mail}", f"smtp:{local.lower()}@{initial_dom}"]
            if rng.random() < 0.3:
                proxies.append(f"smtp:{first[0].lower()}{last.lower()}{i}@{primary_dom}")
            if rng.random() < 0.15:
                proxies.append(
                    f"smtp:{local}@{brand_dom if domain == primary_dom else primary_dom}"
                )
            if rng.random() < 0.1:
                proxies.append(f"smtp:{local.lower()}@{routing_dom}")
            if rng.random() < 0.05:
                proxies.append(f"smtp:{local.lower()}@{legacy_dom}")  # unverified: never accepted
            if rng.random() < 0.05:
                proxies.append(f"smtp:{local.lower()}@{sso_dom}")  # no Email service
            if rng.random() < 0.3:
                proxies.append(f"SIP:{mail.lower()}")
            if rng.random() < 0.2:
                proxies.append(
                    f"X500:/o=ExchangeLabs/ou=Exchange Administrative Group/cn={uid[:8]}"
                )
            rng.shuffle(proxies)
            user |= {"mail": mail, "proxyAddresses": proxies, "jobTitle": "Staff"}
            if roll < 0.2:  # shared mailbox: a disabled account with a mailbox
                user |= {"accountEnabled": False, "displayName": f"Shared {last} {i}"}
            elif roll < 0.22:  # a leaver whose mailbox still exists
                user["accountEnabled"] = False
            elif rng.random() < 0.1:  # UPN differs from mail and is not a proxy
                user["userPrincipalName"] = f"u{i}@{primary_dom}"
        store.load("users", user)
        user_ids.append(uid)

    contact_ids: list[str] = []
    for i in range(spec.contacts):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        ext = f"{first.lower()}.{last.lower()}{i}@{rng.choice(EXTERNAL_DOMAINS)}"
        proxies = [f"SMTP:{ext}"]
        if rng.random() < 0.3:  # a tenant alias on a contact is deliverable
            proxies.append(f"smtp:{local_part(first, last + 'Ext')}@{primary_dom}")
        cid = store.new_id()
        store.load("contacts", {
            "id": cid, "displayName": f"{first} {last} (external)", "mail": ext,
            "mailNickname": f"{first}{last}{i}", "proxyAddresses": proxies,
            "companyName": "Partner", "givenName": first, "surname": last,
        })  # fmt: skip
        contact_ids.append(cid)

    group_ids: list[str] = []
    for i in range(spec.groups):
        roll = rng.random()
        dept = rng.choice(DEPARTMENTS)
        gname = f"{dept}-{i}"
        gid = store.new_id()
        group: dict[str, Any] = {
            "id": gid, "displayName": f"{dept} team {i}", "mailNickname": gname,
            "groupTypes": [], "mailEnabled": True, "securityEnabled": False,
            "mail": None, "proxyAddresses": [],
        }  # fmt: skip
        if roll < 0.25:  # plain security group: no mail at all
            group |= {"mailEnabled": False, "securityEnabled": True}
        else:
            local = local_part(dept, f"team{i}")
            mail = f"{mixed(local)}@{primary_dom}"
            proxies = [f"SMTP:{mail}", f"smtp:{local.lower()}@{initial_dom}"]
            if roll < 0.6:  # Microsoft 365 group
                group["groupTypes"] = ["Unified"]
                proxies.append(f"SPO:SPO_{gid}@SPO_{gid}")
            elif roll < 0.7:  # mail-enabled security group
                group["securityEnabled"] = True
            if rng.random() < 0.2:
                proxies.append(f"smtp:{local.lower()}@{brand_dom}")
            group |= {"mail": mail, "proxyAddresses": proxies}
        store.load("groups", group)
        store.members[gid] = {}
        group_ids.append(gid)

    _add_memberships(store, spec, user_ids, group_ids, contact_ids)


def _add_memberships(
    store: DirectoryStore,
    spec: TenantSpec,
    user_ids: list[str],
    group_ids: list[str],
    contact_ids: list[str],
) -> None:
    """One all-staff group, heavy-tailed group sizes, a few contacts and acyclic nesting."""
    rng = store.rng
    if not group_ids or not user_ids:
        return
    target = spec.memberships if spec.memberships is not None else 4 * len(user_ids)
    store.members[group_ids[0]] = dict.fromkeys(user_ids[: min(len(user_ids), target)])
    remaining = max(0, target - len(store.members[group_ids[0]]))
    others = group_ids[1:]
    weights = [rng.paretovariate(1.2) for _ in others]
    total = sum(weights) or 1.0
    sizes = [min(len(user_ids), round(remaining * w / total)) for w in weights]
    shortfall = remaining - sum(sizes)
    for index in range(len(sizes)):  # capped groups leave a shortfall: spread it over the rest
        if shortfall <= 0:
            break
        extra = min(shortfall, len(user_ids) - sizes[index], max(1, remaining // len(sizes)))
        sizes[index] += extra
        shortfall -= extra
    for gid, k in zip(others, sizes, strict=True):
        members = rng.sample(user_ids, k) if k else []
        if contact_ids and rng.random() < 0.1:
            members.append(rng.choice(contact_ids))
        store.members[gid] = dict.fromkeys(members)
    for index, gid in enumerate(group_ids[:-1]):
        if rng.random() < 0.1:  # nesting only towards later groups: no cycles
            child = group_ids[rng.randrange(index + 1, len(group_ids))]
            store.members[gid][child] = None
