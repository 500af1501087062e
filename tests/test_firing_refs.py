"""A firing's summary names the channels the deliveries are recorded for: one rule
(deallens/db/notifications.py _CHANNELS) for both, whatever the user has and SMS's switch."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.db.notifications import firing_refs, record_intents
from tests.notify_data import fire, make_users, seed_market

USERS = {
    # user columns -> the channels it has with SMS on
    "everything": ({"push_webhook_url": "http://127.0.0.1:9/hook", "sms_number": "+15550100"}, ["email", "push", "sms"]),
    "email off": ({"email_enabled": False, "push_webhook_url": "http://127.0.0.1:9/hook"}, ["push"]),
    "sms only": ({"email_enabled": False, "sms_number": "+15550100"}, ["sms"]),
    "email only": ({}, ["email"]),
}


@pytest.mark.parametrize("sms_enabled", [True, False])
async def test_summary_channels_are_the_recorded_deliveries(db: AsyncEngine, sms_enabled: bool) -> None:
    companies = await seed_market(db, ["AAPL"], until=dt.date(2026, 11, 27), days=2)
    history: dict[str, int] = {}
    for n, (label, (columns, _)) in enumerate(USERS.items()):
        [user] = await make_users(db, 1, start=n + 1, **columns)
        history[label] = await fire(db, user, companies["AAPL"])
    [gone] = await make_users(db, 1, start=9, sms_number="+15550100")
    history["unsubscribed"] = await fire(db, gone, None)
    async with db.begin() as conn:
        await conn.execute(text("UPDATE users SET unsubscribed_at = now() WHERE id = :u"), {"u": gone})

    refs = {ref["history_id"]: ref for ref in await firing_refs(db, list(history.values()), sms_enabled=sms_enabled)}
    await record_intents(db, list(history.values()), sms_enabled=sms_enabled)
    async with db.connect() as conn:
        recorded = {
            row.alert_history_id: row.channels
            for row in await conn.execute(text(
                "SELECT alert_history_id, array_agg(channel ORDER BY channel) AS channels "
                "FROM notification_deliveries GROUP BY alert_history_id"
            ))
        }
    for label, history_id in history.items():
        expected = [c for c in USERS[label][1] if sms_enabled or c != "sms"] if label in USERS else []
        assert refs[history_id]["channels"] == expected, label
        assert sorted(refs[history_id]["channels"]) == recorded.get(history_id, []), label
    assert refs[history["everything"]]["symbol"] == "AAPL" and refs[history["unsubscribed"]]["symbol"] is None
