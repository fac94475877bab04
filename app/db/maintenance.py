"""Planner statistics during bulk loads.

A first full round fills tables that PostgreSQL has no statistics for yet; without them it
plans `external_id = ANY(...)` lookups as one index-range scan plus a recheck of every row
against the list, which grows quadratically with the round (measured: 66 ms per page at 10k
objects). So a round re-analyzes each mirror table that has grown fourfold since its last
ANALYZE (1k, 4k, 16k, ... rows): a handful of times per table, and never a table the round
does not touch. ANALYZE samples at most 30,000 rows, so each run is cheap.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

MIRROR_TABLES = ("recipients", "addresses", "memberships", "pending_deletions", "changes")
MIN_CHANGED_ROWS = 1_000
GROWTH = 4  # re-analyze once a table holds this many times the rows of its last ANALYZE

# n_mod_since_analyze comes from the cumulative statistics, current to within about a second.
_GROWN = text(
    "SELECT relname FROM pg_stat_user_tables "
    "WHERE relname = ANY(:tables) AND n_mod_since_analyze >= :min_rows "
    "AND n_mod_since_analyze >= (:growth - 1) * GREATEST(n_live_tup - n_mod_since_analyze, 0)"
)

CHECK_EVERY_PAGES = 4


def worth_checking(pages: int) -> bool:
    return pages % CHECK_EVERY_PAGES == 2


async def analyze_grown(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    """ANALYZE the mirror tables that grew `GROWTH`-fold since their last ANALYZE."""
    async with sessionmaker() as session:
        if session.get_bind().dialect.name != "postgresql":
            return []
        grown = list(
            await session.scalars(
                _GROWN,
                {"tables": list(MIRROR_TABLES), "min_rows": MIN_CHANGED_ROWS, "growth": GROWTH},
            )
        )
        if grown:
            # Names come from MIRROR_TABLES (the statistics view only echoes them back).
            await session.execute(text(f"ANALYZE {', '.join(sorted(grown))}"))
        await session.commit()
        return grown
