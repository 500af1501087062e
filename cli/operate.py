"""`monitors status|pause|resume|adjust` and `schedules list|trigger|pause|unpause`: what
`celery inspect` and beat's admin did, through the monitors' signals, update and query
(workflows/alerts.py) and the Temporal schedules that schedules.py defines."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cli.common import build, client, common_options, positive_int, temporal_command
from deallens.config import ConfigError, Settings
from deallens.contracts import AdjustInput, MonitorStatus, PauseInput

KINDS = ("price", "volume", "news", "deal")


def _kind(value: str) -> str:
    if value not in KINDS:
        raise argparse.ArgumentTypeError(f"invalid choice: {value!r} (choose from {', '.join(KINDS)})")
    return value


def register(commands: Any) -> None:
    monitors = commands.add_parser("monitors", help="the alert monitors: status, pause, resume, adjust").add_subparsers(
        dest="action", required=True)
    status = monitors.add_parser("status", help="each monitor's state (its `status` query)")
    status.add_argument("kinds", nargs="*", type=_kind, metavar="KIND", help=f"one of {', '.join(KINDS)} (default all)")
    common_options(status, wait=False)
    pause = monitors.add_parser("pause", help="stop evaluating (the `pause` signal)")
    pause.add_argument("kind", choices=KINDS)
    pause.add_argument("--reason", default="", help="shown by `monitors status` and `health`")
    common_options(pause, wait=False)
    resume = monitors.add_parser("resume", help="evaluate again (the `resume` signal)")
    resume.add_argument("kind", choices=KINDS)
    common_options(resume, wait=False)
    adjust = monitors.add_parser("adjust", help="change the interval or cooldown (the `adjust` update)")
    adjust.add_argument("kind", choices=KINDS)
    adjust.add_argument("--interval-seconds", type=positive_int)
    adjust.add_argument("--cooldown-seconds", type=int)
    common_options(adjust, wait=False)

    schedules = commands.add_parser("schedules", help="the Temporal schedules: list, trigger, pause, unpause").add_subparsers(
        dest="action", required=True)
    listing = schedules.add_parser("list", help="every schedule: paused or not, next and last run")
    common_options(listing, wait=False)
    for name, what in (("trigger", "run it now"), ("pause", "pause it"), ("unpause", "unpause it")):
        one = schedules.add_parser(name, help=what)
        one.add_argument("schedule_id", metavar="SCHEDULE_ID")
        if name in ("pause", "unpause"):
            one.add_argument("--note", default=None, help="why (kept on the schedule, shown by health)")
        common_options(one, wait=False)


def _monitor_id(kind: str) -> str:
    from activities.alerts import monitor_id

    return monitor_id(kind)


async def monitors(args: argparse.Namespace, settings: Settings) -> int:
    from temporalio.service import RPCError, RPCStatusCode

    if args.action == "status":
        kinds = args.kinds or list(KINDS)
        if args.show_command:
            for kind in kinds:
                print(temporal_command(settings, "workflow", "query", "--workflow-id", _monitor_id(kind), "--name", "status"))
            return 0
        temporal = await client(settings)
        code = 0
        for kind in kinds:
            try:
                status = await temporal.get_workflow_handle(_monitor_id(kind)).query("status", result_type=MonitorStatus)
            except RPCError as error:
                if error.status != RPCStatusCode.NOT_FOUND:
                    raise ConfigError(f"{_monitor_id(kind)}: {error.message}") from None
                print(f"monitor {kind}: MISSING (not running): start it with `python schedules.py apply`")
                code = 1
                continue
            state = f"PAUSED ({status.pause_reason or 'no reason given'})" if status.paused else "running"
            pending = "all" if status.pending_all else (", ".join(status.pending_symbols) or "none")
            last = status.last_evaluation_at.isoformat(timespec="seconds") if status.last_evaluation_at else "none yet"
            print(f"monitor {kind}: {state}; every {status.settings.interval_seconds}s, cooldown {status.settings.cooldown_seconds}s; "
                  f"{status.evaluations} evaluation(s), {status.fired_total} fired; last {last}; pending {pending}")
        return code

    workflow_id = _monitor_id(args.kind)
    if args.action == "adjust":
        change = build(AdjustInput, interval_seconds=args.interval_seconds, cooldown_seconds=args.cooldown_seconds)
        if args.interval_seconds is None and args.cooldown_seconds is None:
            raise ConfigError("adjust: give --interval-seconds and/or --cooldown-seconds")
        payload = change.model_dump(mode="json", exclude_none=True)
        if args.show_command:
            print(temporal_command(settings, "workflow", "update", "execute", "--workflow-id", workflow_id,
                                   "--name", "adjust", "--input", json.dumps(payload)))
            return 0
        temporal = await client(settings)
        try:
            settled = await temporal.get_workflow_handle(workflow_id).execute_update("adjust", payload)
        except RPCError as error:
            raise ConfigError(f"{workflow_id}: {error.message}") from None
        print(f"monitor {args.kind}: {json.dumps(settled, default=str)}")
        return 0

    signal = args.action  # pause | resume
    payload = build(PauseInput, reason=args.reason).model_dump(mode="json") if signal == "pause" else {}
    if args.show_command:
        print(temporal_command(settings, "workflow", "signal", "--workflow-id", workflow_id, "--name", signal,
                               "--input", json.dumps(payload)))
        return 0
    temporal = await client(settings)
    try:
        await temporal.get_workflow_handle(workflow_id).signal(signal, payload)
    except RPCError as error:
        raise ConfigError(f"{workflow_id}: {error.message}") from None
    print(f"monitor {args.kind}: {'paused' if signal == 'pause' else 'resumed'}")
    return 0


async def schedules(args: argparse.Namespace, settings: Settings) -> int:
    from temporalio.service import RPCError, RPCStatusCode

    from schedules import SCHEDULES

    if args.action == "list":
        if args.show_command:
            print(temporal_command(settings, "schedule", "list"))
            return 0
        temporal = await client(settings)
        known = {d.id: d for d in SCHEDULES}
        listed = {s.id: s async for s in await temporal.list_schedules()}
        print(f"{'schedule':<28} {'state':<8} {'next run (UTC)':<26} {'last run (UTC)':<26} workflow")
        for schedule_id in [*known, *sorted(set(listed) - set(known))]:
            if schedule_id not in listed:
                print(f"{schedule_id:<28} {'MISSING':<8} {'':<26} {'':<26} {known[schedule_id].workflow}")
                continue
            described = await temporal.get_schedule_handle(schedule_id).describe()
            info = described.info
            state = "PAUSED" if described.schedule.state.paused else "active"
            upcoming = info.next_action_times[0].isoformat(timespec="seconds") if info.next_action_times else "-"
            recent = info.recent_actions[-1].started_at.isoformat(timespec="seconds") if info.recent_actions else "-"
            workflow = getattr(described.schedule.action, "workflow", "?")
            extra = "" if schedule_id in known else "  (not in schedules.py)"
            print(f"{schedule_id:<28} {state:<8} {upcoming:<26} {recent:<26} {workflow}{extra}")
        return 0

    schedule_id = args.schedule_id
    if args.show_command:
        if args.action == "trigger":
            print(temporal_command(settings, "schedule", "trigger", "--schedule-id", schedule_id))
        else:
            words = ["schedule", "toggle", "--schedule-id", schedule_id, "--pause" if args.action == "pause" else "--unpause"]
            words += ["--reason", args.note or f"{args.action}d with starter.py"]
            print(temporal_command(settings, *words))
        return 0
    temporal = await client(settings)
    handle = temporal.get_schedule_handle(schedule_id)
    try:
        if args.action == "trigger":
            await handle.trigger()
        elif args.action == "pause":
            await handle.pause(note=args.note or "paused with starter.py")
        else:
            await handle.unpause(note=args.note or "unpaused with starter.py")
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            known = ", ".join(d.id for d in SCHEDULES)
            print(f"starter: no schedule {schedule_id!r}; schedules.py defines {known}", file=sys.stderr)
            return 2
        raise ConfigError(f"schedule {schedule_id}: {error.message}") from None
    print(f"schedule {schedule_id}: {'triggered' if args.action == 'trigger' else args.action + 'd'}")
    return 0
