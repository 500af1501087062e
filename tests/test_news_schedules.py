"""The news schedules on a real dev server: the old system's cadence, in UTC, with jitter."""

from __future__ import annotations

import datetime as dt

from temporalio.client import ScheduleOverlapPolicy
from temporalio.testing import WorkflowEnvironment

import schedules


async def test_news_schedules_run_as_the_old_system_did(dev_env: WorkflowEnvironment, task_queue: str) -> None:
    client = dev_env.client
    await schedules.apply(client, dry_run=False, task_queue=task_queue)
    try:
        market = (await client.get_schedule_handle("ingest-market-news").describe()).schedule
        company = (await client.get_schedule_handle("ingest-company-news").describe()).schedule
        deal = (await client.get_schedule_handle("ingest-deal-news").describe()).schedule
        for schedule, workflow in ((market, "IngestMarketNews"), (company, "IngestCompanyNews"), (deal, "IngestDealNews")):
            assert schedule.spec.time_zone_name == "UTC" and schedule.action.workflow == workflow  # type: ignore[attr-defined]
            assert schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
            assert schedule.spec.jitter is not None and schedule.spec.jitter > dt.timedelta(0)
        # General news every 15 minutes from 12:00 to 23:00 (the last run at 23:00 itself).
        hours = sorted({h for c in market.spec.calendars for r in c.hour for h in range(r.start, r.end + 1, r.step or 1)})
        assert hours == list(range(12, 24))
        minutes = {m for c in market.spec.calendars for r in c.minute for m in range(r.start, r.end + 1, r.step or 1)}
        assert minutes == {0, 15, 30, 45}
        # Company news every 30 minutes offset by 10; deal news every 30 minutes.
        assert sorted(r.start for c in company.spec.calendars for r in c.minute) == [10, 40]
        assert sorted(r.start for c in deal.spec.calendars for r in c.minute) == [0, 30]
    finally:
        for definition in schedules.SCHEDULES:
            await client.get_schedule_handle(definition.id).delete()
        for kind in schedules.ALERT_KINDS:
            await client.get_workflow_handle(f"alert-monitor-{kind}").terminate("test over")
