"""Articles a run stored but never scored or read for deals: the next runs' downstream steps take them.

Each Ingest* run scores and tracks the id range it inserted. A run stopped between its store
and those steps (`make run` stopped with Ctrl-C, a laptop asleep past the schedules'
30-minute run timeout, a step that failed) leaves its articles outside every later run's
range, so nothing would ever score them or read them for deals. So each run's sentiment and
deal steps also take such articles below their range: older than any live run's (a live run
scores within minutes of its store; STRANDED_AFTER keeps the steps off a concurrent run's
rows), and published recently (bounded work, found through the published_at index).
"""

from __future__ import annotations

import datetime as dt

STRANDED_AFTER = dt.timedelta(hours=1)
STRANDED_WITHIN = dt.timedelta(days=7)


# The SQL fragments take a fixed table alias from the callers, never input.
def in_range_or_stranded(a: str) -> str:
    """A predicate on news_articles `a`: in [:first_id, :last_id], or stranded from :stranded_from on."""
    return (
        f"{a}.id <= :last_id AND ({a}.id >= :first_id OR ({a}.id >= :stranded_from "
        f"AND {a}.created_at < now() - CAST(:stranded_after AS interval)))"
    )


def oldest_candidate(a: str, condition: str) -> str:
    """The first article below :first_id that meets the step's `condition` and looks stranded."""
    return (
        f"SELECT min({a}.id) FROM news_articles {a} WHERE {a}.id < :first_id "
        f"AND {a}.published_at > now() - CAST(:stranded_within AS interval) "
        f"AND {a}.created_at < now() - CAST(:stranded_after AS interval) AND ({condition})"
    )


def params(first_id: int) -> dict[str, object]:
    """The bound values the fragments use besides :last_id and :stranded_from."""
    return {"first_id": first_id, "stranded_after": STRANDED_AFTER, "stranded_within": STRANDED_WITHIN}
