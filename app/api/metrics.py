"""Prometheus text exposition for `/metrics`: lookups by verdict, index and tenant state.

Counters are plain dictionaries bumped on the hot path (~0.1 µs); the exposition is rendered
only when scraped.
"""

from __future__ import annotations

from collections import Counter

from app.directory.lookup import LookupIndex


class Metrics:
    def __init__(self) -> None:
        self.counters: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()

        # (protocol, verdict) -> count: the hot path bumps this plain dict (~0.1 µs)
        self.lookups: dict[tuple[str, str], int] = {}

    def inc(self, name: str, amount: int = 1, **labels: str) -> None:
        self.counters[(name, tuple(sorted(labels.items())))] += amount

    def count_lookup(self, protocol: str, verdict: str) -> None:
        key = (protocol, verdict)
        self.lookups[key] = self.lookups.get(key, 0) + 1

    def render(self, index: LookupIndex) -> str:
        lines: list[str] = []
        seen: set[str] = set()
        counters = self.counters.copy()
        for (protocol, verdict), value in self.lookups.items():
            key = ("roster_lookups_total", (("protocol", protocol), ("verdict", verdict)))
            counters[key] += value
        for (name, labels), value in sorted(counters.items()):
            if name not in seen:
                lines.append(f"# TYPE {name} counter")
                seen.add(name)
            lines.append(f"{name}{_labels(labels)} {value}")
        lines += [
            "# TYPE roster_index_addresses gauge",
            f"roster_index_addresses {index.address_count()}",
            "# TYPE roster_index_last_seq gauge",
            f"roster_index_last_seq {index.last_seq}",
            "# TYPE roster_index_healthy gauge",
            f"roster_index_healthy {int(index.loaded and index.healthy)}",
            "# TYPE roster_tenant_ready gauge",
        ]
        for tenant in sorted(index.tenants.values(), key=lambda t: t.name):
            labels = (("tenant", tenant.name),)
            lines.append(f"roster_tenant_ready{_labels(labels)} {int(tenant.ready)}")
        return "\n".join(lines) + "\n"


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    escaped = (
        f'{key}="{value.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for key, value in labels
    )
    return "{" + ",".join(escaped) + "}"
