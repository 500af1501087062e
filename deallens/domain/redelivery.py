"""When a parked delivery is tried again without a person.

A delivery is parked (`failed`) when its channel's retries ran out: the relay was down for
longer than those retries last, a webhook kept answering 5xx. Most such outages end within
hours, so the RetryParkedDeliveries schedule re-queues each parked row a few times over a day,
further apart each time, before `starter.py notifications failed` lists it as needing a human.
A row re-queued and parked again waits for the next delay; the delay counts from its parking
(the row's updated_at), not from the firing, so a long send never shortens the next wait.
"""

from __future__ import annotations

import datetime as dt

# After the 1st, 2nd and 3rd parking: 15 minutes, 2 hours, 8 hours (about 10 hours in all).
AUTO_RETRY_DELAYS: tuple[dt.timedelta, ...] = (
    dt.timedelta(minutes=15),
    dt.timedelta(hours=2),
    dt.timedelta(hours=8),
)
MAX_AUTO_RETRIES = len(AUTO_RETRY_DELAYS)


def next_auto_retry(parked_at: dt.datetime, auto_retries: int) -> dt.datetime | None:
    """When a row parked at `parked_at` after `auto_retries` automatic re-queues goes again;
    None once they are used up (a person decides: `starter.py notifications retry`)."""
    if auto_retries < 0:
        raise ValueError(f"auto_retries: {auto_retries} is negative")
    if auto_retries >= MAX_AUTO_RETRIES:
        return None
    return parked_at + AUTO_RETRY_DELAYS[auto_retries]


def delay_seconds() -> list[int]:
    """The delays as whole seconds, in order: the SQL side indexes them by auto_retries + 1."""
    return [int(delay.total_seconds()) for delay in AUTO_RETRY_DELAYS]
