"""Graviton trials: did a move to arm64 pay off? Equal windows of whole UTC days before and after
the move, compared on CPU (at equal throughput), latency, throughput and list price.

A move is known from the resource's tags (`graviton-migrated-at`, optionally
`graviton-previous-type`) or from the store's history: a graviton-advisor finding for the resource
that has been resolved while the resource now runs on Graviton. Pure: the caller hands in the
resources, the resolved advice, the daily CloudWatch series, the prices and `now`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from pydantic import Field, model_validator

from rules.config import PricedPolicy
from rules.findings import Finding, Severity
from rules.graviton import KIND as ADVICE_KIND
from rules.pricing import HOURS_PER_MONTH, PriceTable, comparable

SAVING = "graviton-saving"
REGRESSION = "graviton-regression"
ADVISOR_JOB = "graviton-advisor"
MOVED_AT_TAG = "graviton-migrated-at"  # ISO date (or date-time, UTC) of the move: 2026-11-20
PREVIOUS_TYPE_TAG = "graviton-previous-type"  # what it ran on before: m5.large, db.m5.large
DAYS_PER_MONTH = HOURS_PER_MONTH / 24
MULTI_AZ_FACTOR = 2  # a Multi-AZ RDS instance bills a standby of the same class
# Graviton families: a generation digit followed by `g` (m7g, c7gn, r6gd, t4g, x2gd, im4gn).
_GRAVITON_FAMILY = re.compile(r"[a-z]+\d+g[a-z]*")

Series = Sequence[tuple[datetime, float]]


class TrialPolicy(PricedPolicy):
    repeat_interval_hours: float = Field(
        default=168, ge=1, description="Hours before a still-open finding is announced again (a report: weekly)."
    )
    window_days: int = Field(default=7, ge=1, le=30, description="Whole UTC days compared on each side of the move; the move day itself is skipped.")
    min_days_with_data: int = Field(default=3, ge=1, le=30, description="A metric is compared only when it has data on at least this many days of each window.")
    regression_percent: float = Field(default=20, gt=0, le=1000, description="Flag a regression when latency, or CPU at equal throughput, got worse by more than this.")
    min_cpu_percent: float = Field(default=5, ge=0, le=100, description="CPU (at equal throughput) below this after the move is never called a regression.")
    report_days: int = Field(default=90, ge=1, le=365, description="Report a move for this many days after its after-window ended, then leave it out.")

    @model_validator(mode="after")
    def _data_days_fit(self) -> TrialPolicy:
        if self.min_days_with_data > self.window_days:
            raise ValueError(f"`min_days_with_data` ({self.min_days_with_data}) cannot exceed "
                             f"`window_days` ({self.window_days}).")
        return self


@dataclass(frozen=True)
class Resource:
    """A resource as listed now: what it runs on and its tags."""

    service: str  # ec2 | rds | lambda
    resource_id: str
    region: str
    current: str  # instance type, DB instance class, or Lambda architecture
    tags: Mapping[str, str] = field(default_factory=dict)
    memory_mb: int = 0  # Lambda
    multi_az: bool = False  # RDS


@dataclass(frozen=True)
class ResolvedAdvice:
    """A graviton-advisor finding the store has resolved: the resource was last seen on x86 at
    `last_seen` and no longer at `resolved_at`."""

    service: str
    resource_id: str
    previous: str
    target: str
    last_seen: datetime
    resolved_at: datetime


@dataclass(frozen=True)
class Move:
    """A resource that moved to Graviton; its windows are whole UTC days."""

    resource: Resource
    previous: str | None
    before_end: date  # the before window is the `window_days` days up to this day, excluded
    after_start: date  # the after window starts on this day
    source: str

    def windows(self, days: int) -> tuple[date, date, date, date]:
        """(before start, before end, after start, after end); ends excluded."""
        return (self.before_end - timedelta(days=days), self.before_end,
                self.after_start, self.after_start + timedelta(days=days))


@dataclass(frozen=True)
class Comparison:
    """One measure, before and after (the window's mean per day, or per invocation)."""

    key: str  # cpu | latency | throughput
    name: str
    before: float
    after: float
    unit: str

    @property
    def change(self) -> float | None:
        return (self.after / self.before - 1) if self.before else None

    def text(self) -> str:
        pct = "" if self.change is None else f" ({self.change * 100:+.0f} %)"
        return f"{self.name} {self.before:,.1f} -> {self.after:,.1f}{self.unit}{pct}"


@dataclass(frozen=True)
class Trial:
    """What one move came to: `verdict` is improved | regressed | pending | no-data."""

    move: Move
    verdict: str
    why: str
    comparisons: tuple[Comparison, ...] = ()
    regressions: tuple[str, ...] = ()
    saving: float | None = None  # realised $/month (negative: the move costs more)


def is_graviton(r: Resource) -> bool:
    if r.service == "lambda":
        return r.current == "arm64"
    family = r.current.removeprefix("db.").partition(".")[0]
    return bool(_GRAVITON_FAMILY.fullmatch(family))


def _moved_on(value: str) -> date | None:
    try:
        return datetime.fromisoformat(value.strip()).date()
    except ValueError:
        return None


def find_moves(resources: Iterable[Resource], advice: Iterable[ResolvedAdvice]) -> tuple[list[Move], list[str]]:
    """Moves to Graviton: by tag first, else by resolved advice; notes say why a tag was ignored."""
    resolved = {(a.service, a.resource_id): a for a in advice}
    moves, notes = [], []
    for r in resources:
        a = resolved.get((r.service, r.resource_id))
        value = r.tags.get(MOVED_AT_TAG)
        if value is not None:
            day = _moved_on(value)
            if day is None:
                notes.append(f"{r.resource_id}: tag {MOVED_AT_TAG}={value!r} is not an ISO date (like 2026-11-20): "
                             "no trial.")
            elif not is_graviton(r):
                notes.append(f"{r.resource_id}: tagged as moved to Graviton on {day} but runs {r.current}: no trial.")
            else:
                previous = (r.tags.get(PREVIOUS_TYPE_TAG) or (a.previous if a else None)
                            or ("x86_64" if r.service == "lambda" else None))
                moves.append(Move(r, previous, day, day + timedelta(days=1), f"tag {MOVED_AT_TAG}={value}"))
        elif a and is_graviton(r):
            moves.append(Move(r, a.previous, a.last_seen.date(), a.resolved_at.date() + timedelta(days=1),
                              f"graviton-advisor advised {a.previous} -> {a.target}, last seen on x86 "
                              f"{a.last_seen:%Y-%m-%d}, resolved {a.resolved_at:%Y-%m-%d}"))
    return moves, notes


def due(move: Move, policy: TrialPolicy, now: datetime) -> bool:
    """The after window is over, and not so long ago that the trial is no longer reported."""
    after_end = move.windows(policy.window_days)[3]
    return after_end <= now.date() <= after_end + timedelta(days=policy.report_days)


def metric_span(moves: Sequence[Move], policy: TrialPolicy) -> tuple[date, date]:
    """The days one GetMetricData batch must cover for every move's two windows."""
    spans = [move.windows(policy.window_days) for move in moves]
    return min(s[0] for s in spans), max(s[3] for s in spans)


def _daily(series: Series, start: date, end: date) -> dict[date, float]:
    days: dict[date, float] = {}
    for ts, value in series:
        if start <= ts.date() < end:
            days[ts.date()] = days.get(ts.date(), 0.0) + value
    return days


def _mean(days: Mapping[date, float]) -> float:
    return sum(days.values()) / len(days)


def _compare(move: Move, series: Mapping[str, Series], policy: TrialPolicy) -> dict[str, Comparison]:
    """The service's measures, each only where both windows have data on enough days. Daily series
    by name (tasks/aws/graviton_metrics.py): EC2 `cpu`, `net_in`, `net_out`; RDS `cpu`,
    `read_latency`, `read_iops`; Lambda `duration` (sum, ms), `invocations`."""
    b0, b1, a0, a1 = move.windows(policy.window_days)
    enough = policy.min_days_with_data

    def windows(name: str) -> tuple[dict[date, float], dict[date, float]] | None:
        before, after = _daily(series.get(name, ()), b0, b1), _daily(series.get(name, ()), a0, a1)
        return (before, after) if len(before) >= enough and len(after) >= enough else None

    found: dict[str, Comparison] = {}
    service = move.resource.service
    if service in ("ec2", "rds") and (cpu := windows("cpu")):
        found["cpu"] = Comparison("cpu", "CPU", _mean(cpu[0]), _mean(cpu[1]), " %")
    if service == "ec2":
        net_in, net_out = windows("net_in"), windows("net_out")
        if net_in and net_out:
            found["throughput"] = Comparison(
                "throughput", "network in+out", _mean(net_in[0]) / 1e9 + _mean(net_out[0]) / 1e9,
                _mean(net_in[1]) / 1e9 + _mean(net_out[1]) / 1e9, " GB/day")
    if service == "rds":
        if latency := windows("read_latency"):
            found["latency"] = Comparison("latency", "ReadLatency", _mean(latency[0]) * 1000,
                                          _mean(latency[1]) * 1000, " ms")
        if iops := windows("read_iops"):
            found["throughput"] = Comparison("throughput", "ReadIOPS", _mean(iops[0]), _mean(iops[1]), "/s")
    if service == "lambda":
        duration, calls = windows("duration"), windows("invocations")
        if duration and calls and sum(calls[0].values()) and sum(calls[1].values()):
            found["latency"] = Comparison("latency", "Duration", sum(duration[0].values()) / sum(calls[0].values()),
                                          sum(duration[1].values()) / sum(calls[1].values()), " ms")
        if calls:  # a day without a datapoint had no invocations: per day of the window
            days = policy.window_days
            found["throughput"] = Comparison("throughput", "invocations", sum(calls[0].values()) / days,
                                             sum(calls[1].values()) / days, "/day")
    return found


def _regressions(found: Mapping[str, Comparison], policy: TrialPolicy) -> list[str]:
    limit = policy.regression_percent / 100
    worse = []
    latency = found.get("latency")
    if latency and latency.change is not None and latency.change > limit:
        worse.append(f"{latency.text()}, worse by more than {policy.regression_percent:g} %")
    cpu, throughput = found.get("cpu"), found.get("throughput")
    if cpu and cpu.before:
        after, at = cpu.after, ""
        if throughput and throughput.before and throughput.after:
            # CPU at equal throughput: scale the after-window's CPU to the before-window's load.
            after = cpu.after * throughput.before / throughput.after
            at = f" at equal {throughput.name} ({cpu.after:,.1f} % measured)"
        change = after / cpu.before - 1
        if change > limit and after >= policy.min_cpu_percent:
            worse.append(f"CPU {cpu.before:,.1f} -> {after:,.1f} %{at} ({change * 100:+.0f} %), worse by more "
                         f"than {policy.regression_percent:g} %")
    return worse


def _prices(prices: PriceTable, region: str, before: str, after: str) -> tuple[float, float, str] | None:
    """Before and after list prices on one basis (`comparable`: an exact Seoul price less a
    us-east-1 stand-in is no saving), and the label an estimate carries; None without both."""
    try:
        b, a = comparable(prices, region, before, after)
    except KeyError:
        return None
    return b.usd, a.usd, " (estimated price)" if b.estimated else ""


def _saving(move: Move, found: Mapping[str, Comparison], prices: PriceTable) -> tuple[float | None, str]:
    """Realised $/month at list price, and how it was worked out (or why it could not be)."""
    r = move.resource
    if move.previous is None:
        return None, f"previous type unknown (tag {PREVIOUS_TYPE_TAG}): no saving worked out"
    if r.service == "lambda":
        latency, calls = found.get("latency"), found.get("throughput")
        priced = _prices(prices, r.region, f"lambda:{move.previous}:gb-second", f"lambda:{r.current}:gb-second")
        if not latency or not calls or priced is None:
            return None, "no Duration or price to work out the saving"
        before_price, after_price, estimated = priced
        # Both durations at the after window's volume: the move's effect, not a change of load.
        gb_calls = calls.after * DAYS_PER_MONTH * r.memory_mb / 1024
        before = latency.before / 1000 * gb_calls * before_price
        after = latency.after / 1000 * gb_calls * after_price
        how = (f"${before:,.2f} -> ${after:,.2f}/month{estimated} at {calls.after * DAYS_PER_MONTH:,.0f} "
               f"invocations a month of {r.memory_mb} MB")
        return round(before - after, 2), how
    service = "ec2" if r.service == "ec2" else "rds"
    priced = _prices(prices, r.region, f"{service}:{move.previous}:hour", f"{service}:{r.current}:hour")
    if priced is None:
        return None, f"no bundled price for {move.previous} or {r.current}"
    before_price, after_price, estimated = priced
    factor = MULTI_AZ_FACTOR if r.multi_az else 1
    before, after = before_price * HOURS_PER_MONTH * factor, after_price * HOURS_PER_MONTH * factor
    return round(before - after, 2), f"${before:,.2f} -> ${after:,.2f}/month{estimated}"


def judge_trial(move: Move, series: Mapping[str, Series] | None, prices: PriceTable, policy: TrialPolicy,
                now: datetime) -> Trial:
    """The verdict on one move; pending when the after window is not over, no-data without metrics."""
    b0, b1, a0, a1 = move.windows(policy.window_days)
    r = move.resource
    if now.date() < a1:
        return Trial(move, "pending", f"{r.resource_id} moved to {r.current} ({move.source}): the after window "
                     f"{a0} to {a1 - timedelta(days=1)} is complete on {a1}: no verdict yet.")
    found = _compare(move, series or {}, policy)
    if not found:
        return Trial(move, "no-data", f"{r.resource_id} moved to {r.current} ({move.source}): no CloudWatch data on "
                     f"{policy.min_days_with_data}+ days of both windows ({b0} to {b1 - timedelta(days=1)}, {a0} to "
                     f"{a1 - timedelta(days=1)}): no verdict.")
    regressions = _regressions(found, policy)
    saving, how = _saving(move, found, prices)
    if saving is None:
        money = how
    elif saving >= 0:
        money = f"saves ${saving:,.2f}/month ({how})"
    else:
        money = f"costs ${-saving:,.2f}/month more ({how})"
    measured = "; ".join(c.text() for c in found.values())
    head = f"REGRESSION: {'; '.join(regressions)}. " if regressions else ""
    why = (f"{head}{move.previous or 'x86'} -> {r.current} ({move.source}): {money}. "
           f"{policy.window_days} days before vs after: {measured}.")
    return Trial(move, "regressed" if regressions else "improved", why, tuple(found.values()),
                 tuple(regressions), saving)


def trial_finding(trial: Trial) -> Finding | None:
    """A judged trial as a finding: a regression warns, a realised move informs."""
    if trial.verdict not in ("improved", "regressed"):
        return None
    move, r = trial.move, trial.move.resource
    numbers = {"service": r.service, "previous": move.previous, "current": r.current, "source": move.source,
               "before_end": move.before_end.isoformat(), "after_start": move.after_start.isoformat(),
               "saving_monthly_usd": trial.saving, "regressions": list(trial.regressions)}
    for c in trial.comparisons:
        numbers[f"{c.key}_measure"] = f"{c.name} ({c.unit.strip()})"
        numbers[f"{c.key}_before"] = round(c.before, 4)
        numbers[f"{c.key}_after"] = round(c.after, 4)
    regressed = trial.verdict == "regressed"
    return Finding(
        kind=REGRESSION if regressed else SAVING, resource_id=r.resource_id, scope=f"{r.region}/{r.service}",
        severity=Severity.WARNING if regressed else Severity.INFO, reason=trial.why, numbers=numbers,
        monthly_cost_usd=trial.saving if trial.saving and trial.saving > 0 else None,
    )


def judge_trials(moves: Iterable[Move], series: Mapping[str, Mapping[str, Mapping[str, Series]]],
                 prices: PriceTable, policy: TrialPolicy, now: datetime) -> tuple[list[Finding], list[str], list[Trial]]:
    """Every move judged: findings for the verdicts, notes for the rest (pending, no data)."""
    trials = [judge_trial(m, series.get(m.resource.service, {}).get(m.resource.resource_id), prices, policy, now)
              for m in moves
              if now.date() <= m.windows(policy.window_days)[3] + timedelta(days=policy.report_days)]
    findings = [f for f in map(trial_finding, trials) if f]
    notes = [t.why for t in trials if t.verdict in ("pending", "no-data")]
    return findings, notes, trials


def resolved_advice(rows: Iterable[Mapping], scope: str) -> list[ResolvedAdvice]:
    """graviton-advisor's resolved candidate findings of one scope, as the store returns them."""
    found = []
    for row in rows:
        if row["kind"] != ADVICE_KIND or row["scope"] != scope or not row.get("resolved_at"):
            continue
        numbers = (row.get("data") or {}).get("numbers") or {}
        if numbers.get("current") and numbers.get("service"):
            found.append(ResolvedAdvice(numbers["service"], row["resource_id"], numbers["current"],
                                        numbers.get("target", ""), row["last_seen"], row["resolved_at"]))
    return found
