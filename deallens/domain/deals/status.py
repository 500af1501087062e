"""Deal statuses and the transitions an article may make.

A deal moves forward through rumored → announced → pending_regulatory → approved → completed;
terminated can follow any open status. Completed and terminated deals are closed: nothing
moves them again (a revived bid is a new deal). Steps may be skipped (a rumor followed by a
completion means the announcement was missed), but a status never moves backwards, with one
exception an article has to state outright: a new regulatory review of an approved deal (a
second authority opens a probe after the first cleared it) moves approved back to
pending_regulatory. An article older than the deal's last status change never changes its
status at all (`may_change`), so a late-arriving rumor cannot undo an announcement.
"""

from __future__ import annotations

from typing import Literal, get_args

DealStatus = Literal["rumored", "announced", "pending_regulatory", "approved", "completed", "terminated"]
STATUSES: tuple[DealStatus, ...] = get_args(DealStatus)
CLOSED: frozenset[DealStatus] = frozenset({"completed", "terminated"})
OPEN: tuple[DealStatus, ...] = tuple(s for s in STATUSES if s not in CLOSED)

_RANK: dict[DealStatus, int] = {"rumored": 0, "announced": 1, "pending_regulatory": 2, "approved": 3, "completed": 4}

# Explicitly stated backwards moves: (from, to).
_STATED_BACKWARDS: frozenset[tuple[DealStatus, DealStatus]] = frozenset({("approved", "pending_regulatory")})


def is_open(status: DealStatus) -> bool:
    return status not in CLOSED


def allowed(old: DealStatus, new: DealStatus) -> bool:
    """May an article reporting `new` move a deal that is `old`? False for a repeat."""
    if old == new or old in CLOSED:
        return False
    if new == "terminated":
        return True
    return _RANK[new] > _RANK[old] or (old, new) in _STATED_BACKWARDS


def may_change(old: DealStatus, new: DealStatus, *, article_at: object, status_since: object) -> bool:
    """`allowed`, and the article is not older than the deal's current status (both aware
    datetimes): news arriving late never rewinds a deal."""
    return allowed(old, new) and article_at >= status_since  # type: ignore[operator]


def transitions() -> dict[DealStatus, tuple[DealStatus, ...]]:
    """The whole table, for the README and the tests."""
    return {old: tuple(new for new in STATUSES if allowed(old, new)) for old in STATUSES}
