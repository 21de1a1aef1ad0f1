"""Dev parking: which tagged resources to stop or start now, acting on schedule transitions only.

A resource is acted on once per transition: when the schedule turned off (or on) since the
last transition this job acted on or observed, the resource is moved to the new state.
Someone who starts an instance by hand inside off-hours keeps it until the next off
transition. RDS and Aurora start themselves after 7 days stopped; a database this job
stopped that is running again, 7 days later, in the same off period, is stopped again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from pydantic import Field

from rules.config import OPT_OUT_TAG, ActingPolicy, opted_out
from rules.findings import Finding, Severity
from rules.pricing import HOURS_PER_MONTH, PriceTable
from rules.schedule import (
    OVERRIDE_TAG,
    SCHEDULE_TAG,
    Schedule,
    ScheduleError,
    Transition,
    dst_gap_note,
    is_on_hours,
    last_transition,
    on_hours_between,
    parse_override,
    parse_schedule,
)

KEEP_TAG = OPT_OUT_TAG
RDS_MAX_STOPPED = timedelta(days=7)  # AWS starts a stopped DB instance/cluster after 7 days
RUNNING = {"ec2": "running", "rds": "available", "aurora": "available"}
STOPPED = "stopped"


class ParkingPolicy(ActingPolicy):
    environment_tag: str = Field(default="env", description="Tag whose value picks a default schedule.")
    default_schedules: dict[str, str] = Field(
        default_factory=dict,
        description="Environment tag value -> schedule used when a resource has no schedule tag, "
        "e.g. {'dev': 'weekdays 08:00-20:00 Asia/Seoul'}.",
    )
    holidays: list[date] = Field(
        default_factory=list, description="Dates (YYYY-MM-DD) with no on-hours for every schedule."
    )


@dataclass(frozen=True)
class Parkable:
    """A stoppable thing: an EC2 instance, an RDS instance or an Aurora cluster."""

    kind: str  # ec2 | rds | aurora
    resource_id: str
    region: str
    state: str
    price_keys: tuple[str, ...]  # hourly prices saved while stopped (Aurora: one per member)
    tags: dict[str, str] = field(default_factory=dict)
    cannot_park: str | None = None  # why the API would refuse or the result would not stick


@dataclass(frozen=True)
class Memory:
    """What the job last did about a resource: the transition and, if it acted, what and when."""

    transition: datetime
    action: str | None = None  # stop | start | None (observed in the right state already)
    at: datetime | None = None

    def dumps(self) -> str:
        return json.dumps({"transition": self.transition.isoformat(), "action": self.action,
                           "at": self.at.isoformat() if self.at else None})

    @classmethod
    def loads(cls, text: str) -> Memory:
        d = json.loads(text)
        return cls(datetime.fromisoformat(d["transition"]), d.get("action"),
                   datetime.fromisoformat(d["at"]) if d.get("at") else None)


@dataclass(frozen=True)
class ParkingItem:
    resource: Parkable
    schedule: str
    on_hours: bool
    action: str | None  # stop | start | None
    reason: str
    remember: Memory | None  # what to store once the action (if any) is done
    hours_parked_month: float
    saved_month_usd: float | None
    estimated: bool = False

    @property
    def scope(self) -> str:
        return self.resource.region


@dataclass
class ParkingPlan:
    items: list[ParkingItem] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def actions(self) -> list[ParkingItem]:
        return [i for i in self.items if i.action]


def _saving(table: PriceTable, r: Parkable, s: Schedule, holidays: frozenset[date], now: datetime
            ) -> tuple[float, float | None, bool]:
    on = on_hours_between(s, now, now + timedelta(days=30), holidays) * HOURS_PER_MONTH / (30 * 24)
    parked = round(HOURS_PER_MONTH - on, 1)
    try:
        prices = [table.get(r.region, k) for k in r.price_keys]
    except KeyError:
        return parked, None, False
    return parked, round(sum(p.usd for p in prices) * parked, 2), any(p.estimated for p in prices)


def _decide(r: Parkable, on: bool, t: Transition | None, mem: Memory | None, now: datetime
            ) -> tuple[str | None, str, Memory | None]:
    if r.state not in (RUNNING[r.kind], STOPPED):
        return None, f"in state {r.state}: a later run decides", None
    running = r.state == RUNNING[r.kind]
    if t is None:
        return None, "no schedule transition in the last year", None
    seen = mem is not None and mem.transition >= t.at
    if not on and running:
        if not seen:
            return "stop", f"off-hours since {t.at:%Y-%m-%d %H:%M} UTC", Memory(t.at, "stop", now)
        if r.kind != "ec2" and mem.action == "stop" and mem.at and now - mem.at >= RDS_MAX_STOPPED:
            return ("stop", "running again 7 days after this job stopped it (AWS auto-start): re-stop",
                    Memory(t.at, "stop", now))
        return None, "started by hand in off-hours: left up until the next off transition", None
    if on and not running:
        if not seen:
            return "start", f"on-hours since {t.at:%Y-%m-%d %H:%M} UTC", Memory(t.at, "start", now)
        return None, "stopped by hand in on-hours: left down until the next on transition", None
    state = "on" if on else "off"
    return None, f"already {'running' if running else 'stopped'} for {state}-hours", (
        None if seen else Memory(t.at))


def plan_parking(
    resources: Iterable[Parkable],
    policy: ParkingPolicy,
    now: datetime,
    memory: Mapping[str, Memory],
    calendars: Mapping[str, frozenset[date]],
    table: PriceTable,
) -> ParkingPlan:
    """Decide, per scheduled resource, whether to stop, start or leave it, and what it saves.

    `memory` is keyed by `memory_key(resource)`. Bad tags become findings, never exceptions.
    """
    plan = ParkingPlan()
    base_holidays = frozenset(policy.holidays)
    for r in resources:
        text = r.tags.get(SCHEDULE_TAG) or policy.default_schedules.get(r.tags.get(policy.environment_tag, ""))
        if not text:
            continue
        where = f"{r.region}/{r.kind}"
        try:
            schedule = parse_schedule(text)
            if schedule.calendar and schedule.calendar not in calendars:
                raise ScheduleError(f"holiday calendar {schedule.calendar!r} does not exist: add "
                                    f"calendars/{schedule.calendar}.txt or fix the tag")
        except ScheduleError as exc:
            source = f"tag {SCHEDULE_TAG}={text!r}" if SCHEDULE_TAG in r.tags else (
                f"default schedule for {policy.environment_tag}={r.tags.get(policy.environment_tag)!r}")
            plan.findings.append(Finding(
                kind="bad-schedule-tag", resource_id=r.resource_id, scope=where, severity=Severity.WARNING,
                reason=f"{r.resource_id}: {source} is invalid ({exc}); it is not parked",
                numbers={"tag": SCHEDULE_TAG, "value": text}))
            continue
        holidays = base_holidays | calendars.get(schedule.calendar or "", frozenset())
        up_until = None
        if OVERRIDE_TAG in r.tags:
            try:
                up_until = parse_override(r.tags[OVERRIDE_TAG], schedule)
            except ScheduleError as exc:
                plan.findings.append(Finding(
                    kind="bad-schedule-tag", resource_id=r.resource_id, scope=where,
                    reason=f"{r.resource_id}: {exc}; the override is ignored",
                    numbers={"tag": OVERRIDE_TAG, "value": r.tags[OVERRIDE_TAG]}))
        parked, saved, estimated = _saving(table, r, schedule, holidays, now)
        on = is_on_hours(schedule, now, holidays, up_until)
        item = ParkingItem(r, str(schedule), on, None, "", None, parked, saved, estimated)
        if opted_out(r.tags):
            plan.items.append(replace(item, reason=f"opt-out tag {KEEP_TAG}", saved_month_usd=None))
            continue
        if r.cannot_park:
            plan.findings.append(Finding(
                kind="parking-skipped", resource_id=r.resource_id, scope=where, severity=Severity.INFO,
                reason=f"{r.resource_id} has a schedule but cannot be parked: {r.cannot_park}",
                numbers={"schedule": str(schedule)}))
            plan.items.append(replace(item, reason=r.cannot_park, saved_month_usd=None))
            continue
        t = last_transition(schedule, now, holidays, up_until)
        action, reason, remember = _decide(r, on, t, memory.get(memory_key(r)), now)
        if up_until is not None and now < up_until:
            reason = f"kept up until {up_until:%Y-%m-%d %H:%M} UTC by {OVERRIDE_TAG}; {reason}"
        gap = dst_gap_note(schedule, now.astimezone(schedule.tz).date())
        if gap:
            reason = f"{reason}; {gap}"
        plan.items.append(replace(item, action=action, reason=reason, remember=remember))
    return plan


def memory_key(r: Parkable) -> str:
    return f"{r.region}|{r.kind}|{r.resource_id}"


def plan_rows(items: Sequence[ParkingItem], outcomes: Mapping[str, str]) -> list[dict[str, object]]:
    """The per-resource table: schedule, what was done, hours parked and $ saved per month."""
    return [
        {
            "resource": i.resource.resource_id,
            "kind": i.resource.kind,
            "region": i.resource.region,
            "schedule": i.schedule,
            "state": i.resource.state,
            "now": "on-hours" if i.on_hours else "off-hours",
            "action": i.action or "",
            "outcome": outcomes.get(memory_key(i.resource), ""),
            "reason": i.reason,
            "hours_parked_per_month": i.hours_parked_month,
            "saved_usd_per_month": "" if i.saved_month_usd is None else i.saved_month_usd,
        }
        for i in items
    ]
