"""The demo universe for the embedded stack: companies, three users, watchlists, alerts.

Seeded only into an empty database, so a second `make run` (or a real deployment that
happens to run it) never duplicates or overwrites anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.db.alerts import insert_alert
from deallens.db.engine import session_factory
from deallens.db.models import Company, User, WatchlistEntry
from deallens.domain.alert_rules import parse_alert
from deallens.domain.universe import DEMO_COMPANIES

DEMO_USERS = (
    ("ada@deallens.local", "Ada Analyst", "America/New_York", ("AAPL", "MSFT", "NVDA", "GOOGL", "META", "AVGO")),
    ("max@deallens.local", "Max M&A", "Europe/London", ("JPM", "GS", "MS", "PFE", "DIS", "AAPL")),
    ("pat@deallens.local", "Pat Portfolio", "America/Los_Angeles", ("TSLA", "AMZN", "XOM", "CVX", "KO", "WMT", "NFLX")),
)

# (user index, definition without user_id): several kinds, thresholds near the demo prices.
DEMO_ALERTS = (
    (0, {"type": "price_above", "symbol": "AAPL", "threshold": 230, "name": "AAPL breaks 230"}),
    (0, {"type": "price_below", "symbol": "NVDA", "threshold": 115}),
    (0, {"type": "percent_change", "symbol": "MSFT", "percent": 2}),
    (1, {"type": "volume_spike", "symbol": "GS", "multiple": 2}),
    (1, {"type": "news_mention", "symbol": "PFE", "keywords": ["acquire", "merger"]}),
    (1, {"type": "deal_new"}),
    (2, {"type": "volume_above", "symbol": "TSLA", "threshold": 150000000}),
    (2, {"type": "news_sentiment", "symbol": "XOM", "threshold": -0.3, "direction": "below"}),
    (2, {"type": "deal_status_change"}),
)


@dataclass(frozen=True)
class SeedReport:
    seeded: bool
    companies: int
    users: int
    alerts: int


async def seed_demo(engine: AsyncEngine) -> SeedReport:
    async with session_factory(engine).begin() as session:
        if await session.scalar(select(func.count()).select_from(User)):
            return SeedReport(seeded=False, companies=0, users=0, alerts=0)
        await session.execute(
            insert(Company)
            .values(
                [
                    {"symbol": c.symbol, "name": c.name, "sector": c.sector, "industry": c.industry,
                     "exchange": c.exchange, "currency": "USD"}
                    for c in DEMO_COMPANIES
                ]
            )
            .on_conflict_do_nothing(index_elements=["symbol"])
        )
        ids = {symbol: id_ for symbol, id_ in await session.execute(select(Company.symbol, Company.id))}
        users = [User(email=email, name=name, timezone=tz) for email, name, tz, _ in DEMO_USERS]
        session.add_all(users)
        await session.flush()
        session.add_all(
            WatchlistEntry(user_id=user.id, company_id=ids[symbol])
            for user, (_, _, _, symbols) in zip(users, DEMO_USERS, strict=True)
            for symbol in symbols
        )
        await session.flush()
        # In the same transaction: a crash part-way leaves no half-seeded demo behind.
        for index, definition in DEMO_ALERTS:
            await insert_alert(session, parse_alert({**definition, "user_id": users[index].id}))
    return SeedReport(seeded=True, companies=len(DEMO_COMPANIES), users=len(users), alerts=len(DEMO_ALERTS))
