"""Creating alerts from validated definitions."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from deallens.db.engine import session_factory
from deallens.db.models import Alert, Company, Deal, User
from deallens.domain.alert_rules import KIND_BY_TYPE, AlertRule, InvalidAlert, alert_params


async def add_alert(engine: AsyncEngine, rule: AlertRule) -> int:
    """Insert the alert and return its id; `InvalidAlert` names a field that points nowhere."""
    async with session_factory(engine).begin() as session:
        return await insert_alert(session, rule)


async def insert_alert(session: AsyncSession, rule: AlertRule) -> int:
    """The same inside the caller's transaction; every reference that points nowhere is
    named in one line (`user_id: no user with id 99; symbol: 'ZZZZ' is not a tracked company`)."""
    problems = []
    if await session.get(User, rule.user_id) is None:
        problems.append(f"user_id: no user with id {rule.user_id}")
    company_id = None
    symbol = getattr(rule, "symbol", None)
    if symbol is not None:
        company_id = await session.scalar(select(Company.id).where(Company.symbol == symbol))
        if company_id is None:
            problems.append(f"symbol: {symbol!r} is not a tracked company")
    deal_id = getattr(rule, "deal_id", None)
    if deal_id is not None and await session.get(Deal, deal_id) is None:
        problems.append(f"deal_id: no deal with id {deal_id}")
    if problems:
        raise InvalidAlert("; ".join(problems))
    alert = Alert(
        user_id=rule.user_id,
        company_id=company_id,
        deal_id=deal_id,
        kind=KIND_BY_TYPE[rule.type],
        params=alert_params(rule),
        name=rule.name,
        cooldown_seconds=rule.cooldown_seconds,
        one_shot=rule.one_shot,
        expires_at=rule.expires_at,
    )
    session.add(alert)
    await session.flush()
    return alert.id
