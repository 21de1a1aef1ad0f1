"""Under-used compute and databases, judged from daily and hourly CloudWatch figures: EC2 instances
with low CPU and network (Trusted Advisor's rule), RDS instances nobody connects to, Redshift
clusters with low CPU; and, serverless first, EC2 instances busy a small share of the hours
(Fargate) and RDS instances with idle or spiky load (Aurora Serverless v2), both sides priced.
Pure: the caller hands in the measured series, the instance sizes and the prices."""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from pydantic import Field, model_validator

from rules.config import OPT_OUT_TAG, ActingPolicy, PricedPolicy, opted_out
from rules.findings import Finding, Severity
from rules.pricing import HOURS_PER_MONTH, PriceTable, comparable

IDLE_INSTANCE = "ec2-low-utilization"
DOWNSIZE_INSTANCE = "ec2-downsize"
IDLE_DATABASE = "rds-no-connections"
LOW_CPU_REDSHIFT = "redshift-low-cpu"
SERVERLESS_INSTANCE = "ec2-serverless-candidate"
AURORA_SERVERLESS = "rds-aurora-serverless-candidate"
MB = 1_000_000  # Trusted Advisor's network threshold is in MB

# Instance sizes by capacity relative to `medium`: one step down the list is "one size down", and
# the ratio says how much busier the same load makes the smaller size.
_SIZES = {"nano": 0.125, "micro": 0.25, "small": 0.5, "medium": 1, "large": 2, "xlarge": 4, "2xlarge": 8,
          "3xlarge": 12, "4xlarge": 16, "6xlarge": 24, "8xlarge": 32, "9xlarge": 36, "12xlarge": 48,
          "16xlarge": 64, "18xlarge": 72, "24xlarge": 96, "32xlarge": 128, "48xlarge": 192}
# A Multi-AZ RDS instance bills a standby of the same class: twice the single-AZ hour.
MULTI_AZ_FACTOR = 2
# Redshift multi-node clusters have at least two nodes.
MIN_MULTI_NODES = 2


class ComputePolicy(ActingPolicy, PricedPolicy):
    repeat_interval_hours: float = Field(
        default=168, ge=1, description="Hours before a still-open finding is announced again (advice: weekly)."
    )
    lookback_days: int = Field(default=14, ge=4, le=63, description="Days of EC2 and Redshift history to judge on (whole UTC days).")
    cpu_low_percent: float = Field(default=10, gt=0, le=100, description="An EC2 day is low when its average CPU is at most this (Trusted Advisor: 10).")
    network_low_mb: float = Field(default=5, ge=0, description="A low EC2 day also has at most this many MB of network in + out (Trusted Advisor: 5).")
    low_days: int = Field(default=4, ge=1, description="Flag an instance low on at least this many days of the lookback (Trusted Advisor: 4 of 14).")
    resize_max_percent: float = Field(default=80, gt=0, le=100, description="One size down only when the peak CPU and memory, scaled to the smaller size, stay at or below this.")
    db_idle_days: int = Field(default=7, ge=1, le=63, description="RDS instances with no connection at all for this many days are flagged.")
    redshift_cpu_low_percent: float = Field(default=10, gt=0, le=100, description="A Redshift cluster is under-used when every day's average CPU is at most this.")
    redshift_busy_cpu_percent: float = Field(default=5, ge=0, le=100, description="An hour with more CPU than this keeps a Redshift cluster running in the pause/resume schedule.")
    min_monthly_saving_usd: float = Field(default=1.0, ge=0, description="Report changes that save at least this per month.")
    busy_hour_cpu_percent: float = Field(default=10, gt=0, le=100, description="An hour whose average CPU is above this is busy; serverless estimates assume nothing needs to run in the other hours, so keep it low.")
    serverless_max_busy_percent: float = Field(default=15, gt=0, le=100, description="EC2 instances busy in at most this share of the hours (and at least one) are Fargate candidates.")
    aurora_max_busy_percent: float = Field(default=25, gt=0, le=100, description="RDS PostgreSQL and MySQL instances busy in at most this share of the hours are Aurora Serverless v2 candidates, when that is cheaper.")
    aurora_min_acu: float = Field(default=0.5, ge=0, le=256, description="Aurora Serverless v2 capacity assumed in the quiet hours (0 needs an engine version with auto-pause).")

    @model_validator(mode="after")
    def _low_days_fit(self) -> ComputePolicy:
        if self.low_days > self.lookback_days:
            raise ValueError(f"`low_days` ({self.low_days}) cannot exceed `lookback_days` ({self.lookback_days}).")
        return self


Series = Sequence[tuple[datetime, float]]


@dataclass(frozen=True)
class Stop:
    """A stop this job can make (after approval): an idle EC2 instance or a database nobody uses."""

    service: str  # ec2 | rds
    resource_id: str
    saving: float
    blocked: str | None = None  # listed in the plan, never applied


def _ec2_blocked(i) -> str | None:
    """Why stopping the instance would be refused, undone or unwanted."""
    if opted_out(i.tags):
        return f"opt-out tag {OPT_OUT_TAG}"
    if i.tags.get("aws:autoscaling:groupName"):
        return f"member of Auto Scaling group {i.tags['aws:autoscaling:groupName']}: the group would replace it"
    if i.root_device_type == "instance-store":
        return "instance-store root device: such instances cannot be stopped"
    if i.lifecycle == "spot":
        return "spot instance: cancel the spot request instead"
    return None


def _db_blocked(d) -> str | None:
    if opted_out(d.tags):
        return f"opt-out tag {OPT_OUT_TAG}"
    if d.replica_of:
        return f"read replica of {d.replica_of}: replicas cannot be stopped"
    if d.multi_az and d.engine.startswith("sqlserver"):
        return "SQL Server Multi-AZ instances cannot be stopped"
    return None


def stops(findings: Iterable[Finding], instances: Iterable, dbs: Iterable) -> list[Stop]:
    """The stops the findings call for: idle instances and databases with no connections."""
    ec2 = {i.instance_id: i for i in instances}
    rds = {d.db_id: d for d in dbs}
    plan = []
    for f in findings:
        if f.kind == IDLE_INSTANCE and f.resource_id in ec2:
            plan.append(Stop("ec2", f.resource_id, f.monthly_cost_usd or 0.0, _ec2_blocked(ec2[f.resource_id])))
        elif f.kind == IDLE_DATABASE and f.resource_id in rds:
            plan.append(Stop("rds", f.resource_id, f.monthly_cost_usd or 0.0, _db_blocked(rds[f.resource_id])))
    return plan


@dataclass(frozen=True)
class InstanceUsage:
    """Daily figures of one EC2 instance over whole UTC days (a day without data is absent)."""

    cpu_avg: Mapping[date, float]
    cpu_max: Mapping[date, float]
    network_bytes: Mapping[date, float]  # NetworkIn + NetworkOut
    memory_max: Mapping[date, float] = field(default_factory=dict)  # CWAgent mem_used_percent; {}: not published


def by_day(series: Series) -> dict[date, float]:
    """One value per UTC day (the caller asked CloudWatch for daily periods)."""
    return {ts.date(): value for ts, value in series}


def sum_by_day(*series: Series) -> dict[date, float]:
    total: dict[date, float] = {}
    for s in series:
        for ts, value in s:
            total[ts.date()] = total.get(ts.date(), 0.0) + value
    return total


def one_size_down(instance_type: str) -> tuple[str, float] | None:
    """`m5.xlarge` -> (`m5.large`, 2.0): the next smaller size and how much smaller it is."""
    family, _, size = instance_type.partition(".")
    if size not in _SIZES:
        return None
    smaller = [s for s, units in _SIZES.items() if units < _SIZES[size]]
    if not smaller:
        return None
    target = max(smaller, key=_SIZES.__getitem__)
    return f"{family}.{target}", _SIZES[size] / _SIZES[target]


def _monthly(prices: PriceTable, region: str, key: str, units: float = 1) -> tuple[float | None, bool]:
    try:
        p = prices.get(region, key)
    except KeyError:
        return None, False
    return round(p.usd * HOURS_PER_MONTH * units, 2), p.estimated


def _money(usd: float | None, estimated: bool, key: str) -> str:
    if usd is None:
        return f"no bundled price for {key}"
    return f"${usd:,.2f}/month" + (" (estimated price)" if estimated else "")


def judge_instances(instances: Iterable, usage: Mapping[str, InstanceUsage], policy: ComputePolicy,
                    prices: PriceTable) -> list[Finding]:
    """Trusted Advisor's low-utilization rule, then stop (low every day) or one size down (when the
    busiest day's CPU and memory, scaled to the smaller size, still fit)."""
    found = []
    for i in instances:
        u = usage.get(i.instance_id)
        if i.state != "running" or u is None:
            continue
        days = sorted(u.cpu_avg)
        low = [d for d in days if u.cpu_avg[d] <= policy.cpu_low_percent
               and u.network_bytes.get(d, 0.0) <= policy.network_low_mb * MB]
        if len(low) < policy.low_days:
            continue
        cpu_days = f"{len(low)} of {len(days)} days at most {policy.cpu_low_percent:g}% CPU and {policy.network_low_mb:g} MB network"
        numbers = {"low_days": len(low), "days": len(days),
                   "cpu_avg_max": round(max(u.cpu_avg.values()), 1),
                   "cpu_peak": round(max(u.cpu_max.values(), default=0.0), 1),
                   "network_mb_max": round(max(u.network_bytes.values(), default=0.0) / MB, 2),
                   "memory_peak": round(max(u.memory_max.values()), 1) if u.memory_max else None,
                   "instance_type": i.instance_type}
        key = f"ec2:{i.instance_type}:hour"
        current, est = _monthly(prices, i.region, key)
        if len(low) == len(days):
            if current is not None and current < policy.min_monthly_saving_usd:
                continue
            found.append(Finding(
                kind=IDLE_INSTANCE, resource_id=i.instance_id, severity=Severity.WARNING,
                reason=(f"{i.instance_type} idle: {cpu_days} (highest daily average CPU "
                        f"{numbers['cpu_avg_max']}%, most network in a day {numbers['network_mb_max']} MB): "
                        f"stop it (`apply=true` asks), saves {_money(current, est, key)}."),
                numbers={**numbers, "action": "stop"}, monthly_cost_usd=current))
            continue
        f = _downsize(i, u, numbers, cpu_days, policy, prices)
        if f:
            found.append(f)
    return found


def _downsize(i, u: InstanceUsage, numbers: dict, cpu_days: str, policy: ComputePolicy,
              prices: PriceTable) -> Finding | None:
    down = one_size_down(i.instance_type)
    if not down:
        return None
    target, ratio = down
    cpu_after = numbers["cpu_peak"] * ratio
    if cpu_after > policy.resize_max_percent:
        return None  # busy peaks: the smaller size would run out of CPU
    mem_peak = numbers["memory_peak"]
    if mem_peak is not None and mem_peak * ratio > policy.resize_max_percent:
        return None  # memory-bound: half the memory would not hold its peak
    key = f"ec2:{target}:hour"
    try:  # both sizes on one basis: an exact price less a stand-in is no saving
        now, smaller = comparable(prices, i.region, f"ec2:{i.instance_type}:hour", key)
    except KeyError:
        return None  # the size may not exist; without both prices there is nothing to compare
    saving = round((now.usd - smaller.usd) * HOURS_PER_MONTH, 2)
    if saving < policy.min_monthly_saving_usd:
        return None
    memory = (f"peak memory {mem_peak}% -> {mem_peak * ratio:g}%" if mem_peak is not None
              else "memory not measured (no CWAgent mem_used_percent): check it before resizing")
    return Finding(
        kind=DOWNSIZE_INSTANCE, resource_id=i.instance_id, severity=Severity.INFO,
        reason=(f"{i.instance_type} -> {target}: {cpu_days}; on the smaller size peak CPU "
                f"{numbers['cpu_peak']}% -> {cpu_after:g}%, {memory} (limit {policy.resize_max_percent:g}%); "
                f"saves {_money(saving, now.estimated, key)}."),
        numbers={**numbers, "action": "resize", "target_type": target}, monthly_cost_usd=saving)


def judge_databases(dbs: Iterable, connections: Mapping[str, Mapping[date, float]], policy: ComputePolicy,
                    prices: PriceTable) -> list[Finding]:
    """RDS instances whose DatabaseConnections maximum was 0 on each of the last `db_idle_days` days."""
    found = []
    for d in dbs:
        daily = connections.get(d.db_id, {})
        # Aurora members go with their cluster; a stopped instance bills no instance hours.
        if d.status != "available" or d.cluster_id:
            continue
        if len(daily) < policy.db_idle_days or max(daily.values()) > 0:
            continue
        key = f"rds:{d.db_class}:hour"
        monthly, est = _monthly(prices, d.region, key, MULTI_AZ_FACTOR if d.multi_az else 1)
        if monthly is not None and monthly < policy.min_monthly_saving_usd:
            continue
        action = ("delete it (replicas cannot be stopped)" if d.replica_of
                  else "stop it (RDS starts it again after 7 days; `apply=true` asks) or snapshot it and delete it")
        found.append(Finding(
            kind=IDLE_DATABASE, resource_id=d.db_id, severity=Severity.WARNING,
            reason=(f"{d.engine} {d.db_class}{' Multi-AZ' if d.multi_az else ''}: no connections on any of "
                    f"the last {len(daily)} days (DatabaseConnections max 0): {action}; "
                    f"saves {_money(monthly, est, key)} of instance hours (storage bills on)."),
            numbers={"days": len(daily), "max_connections": 0, "db_class": d.db_class, "multi_az": d.multi_az},
            monthly_cost_usd=monthly))
    return found


@dataclass(frozen=True)
class Cluster:
    """A provisioned Redshift cluster."""

    cluster_id: str
    region: str
    node_type: str
    nodes: int
    status: str
    tags: Mapping[str, str] = field(default_factory=dict)


def judge_clusters(clusters: Iterable[Cluster], cpu_hourly: Mapping[str, Series], policy: ComputePolicy,
                   prices: PriceTable) -> list[Finding]:
    """Clusters whose daily average CPU stayed at most `redshift_cpu_low_percent` on every day of
    a full lookback: a pause/resume schedule around the busy hours, or fewer nodes, whichever saves more."""
    found = []
    for c in clusters:
        hourly = list(cpu_hourly.get(c.cluster_id, []))
        if c.status != "available" or not hourly:
            continue
        days: dict[date, list[float]] = {}
        for ts, v in hourly:
            days.setdefault(ts.date(), []).append(v)
        daily = {d: sum(vs) / len(vs) for d, vs in days.items()}
        if len(daily) < policy.lookback_days or max(daily.values()) > policy.redshift_cpu_low_percent:
            continue
        key = f"redshift:{c.node_type}:hour"
        node_month, est = _monthly(prices, c.region, key)
        peak = max(v for _, v in hourly)
        busy_hours = sorted({ts.hour for ts, v in hourly if v > policy.redshift_busy_cpu_percent})
        options = []
        if node_month is not None:
            if busy_hours != list(range(24)):
                idle_share = 1 - len(busy_hours) / 24
                options.append((round(node_month * c.nodes * idle_share, 2),
                                f"pause outside the busy UTC hours {_hours(busy_hours)} "
                                f"({24 - len(busy_hours)} h a day paused)"))
            nodes = max(MIN_MULTI_NODES, math.ceil(c.nodes * peak / policy.resize_max_percent))
            if c.nodes > MIN_MULTI_NODES and nodes < c.nodes:
                options.append((round(node_month * (c.nodes - nodes), 2),
                                f"resize to {nodes} nodes (peak CPU {peak:g}% -> {c.nodes * peak / nodes:.1f}%)"))
        options.sort(reverse=True)
        if options and options[0][0] < policy.min_monthly_saving_usd:
            continue
        advice = "; or ".join(f"{text}: saves {_money(usd, est, key)}" for usd, text in options) or _money(None, False, key)
        found.append(Finding(
            kind=LOW_CPU_REDSHIFT, resource_id=c.cluster_id, severity=Severity.INFO,
            reason=(f"{c.nodes} x {c.node_type}: daily average CPU at most {max(daily.values()):.1f}% on all "
                    f"{len(daily)} days (peak hour {peak:g}%): {advice}."),
            numbers={"days": len(daily), "cpu_avg_max": round(max(daily.values()), 1), "cpu_peak": peak,
                     "busy_hours": busy_hours, "nodes": c.nodes, "node_type": c.node_type},
            monthly_cost_usd=options[0][0] if options else None))
    return found


def _hours(hours: list[int]) -> str:
    """[8, 9, 10, 14] -> "08-10, 14"."""
    runs: list[list[int]] = []
    for h in hours:
        if runs and h == runs[-1][-1] + 1:
            runs[-1].append(h)
        else:
            runs.append([h])
    return ", ".join(f"{r[0]:02d}" if len(r) == 1 else f"{r[0]:02d}-{r[-1]:02d}" for r in runs) or "none"


def window(now: datetime, days: int) -> tuple[datetime, datetime]:
    """The last `days` whole UTC days before `now`: daily periods then fall on calendar days."""
    end = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return end - timedelta(days=days), end


# Hourly judgements need most hours of the lookback: an instance launched or stopped within it has
# no full picture of its day.
MIN_MEASURED_SHARE = 0.9
# Fargate (Linux) task sizes: vCPU, least and most memory (GiB) and the memory step.
_FARGATE = ((1, 2, 8, 1), (2, 4, 16, 1), (4, 8, 30, 1), (8, 16, 60, 4), (16, 32, 120, 8))
# RDS engines with an Aurora edition that takes their dumps and snapshots.
AURORA_ENGINES = {"postgres": "Aurora PostgreSQL", "mysql": "Aurora MySQL"}
ACU_GIB = 2  # an Aurora capacity unit is about 2 GiB of memory with matching CPU and network
MAX_ACU = 256


@dataclass(frozen=True)
class HourlyLoad:
    """What the hourly CPU averages of one resource say about when it works."""

    hours: int  # hours measured
    busy: int  # hours with average CPU above the policy's threshold
    busy_hours_of_day: list[int]  # UTC hours of the day that were busy at least once
    median: float
    p95: float

    @property
    def share(self) -> float:
        return self.busy / self.hours

    @property
    def busy_per_month(self) -> float:
        return self.share * HOURS_PER_MONTH


def hourly_load(series: Series, busy_cpu_percent: float) -> HourlyLoad | None:
    values = sorted(v for _, v in series)
    if not values:
        return None
    busy = [ts for ts, v in series if v > busy_cpu_percent]
    return HourlyLoad(len(values), len(busy), sorted({ts.hour for ts in busy}), round(statistics.median(values), 1),
                      round(values[math.ceil(0.95 * len(values)) - 1], 1))


def _measured(load: HourlyLoad | None, policy: ComputePolicy) -> bool:
    return load is not None and load.hours >= MIN_MEASURED_SHARE * policy.lookback_days * 24


def fargate_size(vcpus: float, memory_gib: float) -> tuple[int, float] | None:
    """The smallest Fargate task with at least the instance's vCPUs and memory: (vCPU, GiB)."""
    for cpu, least, most, step in _FARGATE:
        if cpu >= vcpus and most >= memory_gib:
            return cpu, max(least, math.ceil(memory_gib / step) * step)
    return None  # larger than any Fargate task


def advised(findings: Iterable[Finding]) -> set[str]:
    """Resources already advised to stop or to go one size down: one piece of advice per resource,
    the simpler change first (and the summary's total counts each saving once)."""
    return {f.resource_id for f in findings if f.kind in (IDLE_INSTANCE, DOWNSIZE_INSTANCE, IDLE_DATABASE)}


def judge_serverless_instances(instances: Iterable, cpu_hourly: Mapping[str, Series], sizes: Mapping[str, Mapping],
                               policy: ComputePolicy, prices: PriceTable, skip: Collection[str] = ()) -> list[Finding]:
    """Running Linux on-demand instances busy (hourly average CPU above `busy_hour_cpu_percent`) in
    at most `serverless_max_busy_percent` of the hours: the instance's monthly cost against a Fargate
    task of the same vCPU and memory running only in the busy hours. `sizes`: DescribeInstanceTypes'
    `vcpus` and `memory_mib` by instance type."""
    found = []
    for i in instances:
        load = hourly_load(cpu_hourly.get(i.instance_id, []), policy.busy_hour_cpu_percent)
        size = sizes.get(i.instance_type) or {}
        # Spot and Windows instances bill other prices than the Linux on-demand ones priced here.
        if (i.state != "running" or i.instance_id in skip or i.lifecycle == "spot" or i.platform == "windows"
                or not _measured(load, policy) or not load.busy
                or load.share * 100 > policy.serverless_max_busy_percent
                or not size.get("vcpus") or not size.get("memory_mib")):
            continue
        task_size = fargate_size(size["vcpus"], size["memory_mib"] / 1024)
        arch = "arm64" if i.architecture == "arm64" else "x86_64"
        keys = (f"ec2:{i.instance_type}:hour", f"fargate:{arch}:vcpu-hour", f"fargate:{arch}:gb-hour")
        try:  # one basis: a Seoul instance price against a us-east-1 Fargate stand-in is no saving
            hour, vcpu_hour, gb_hour = comparable(prices, i.region, *keys)
        except KeyError:
            continue
        if task_size is None:
            continue
        cpu, gib = task_size
        current = round(hour.usd * HOURS_PER_MONTH, 2)
        fargate = round(load.busy_per_month * (cpu * vcpu_hour.usd + gib * gb_hour.usd), 2)
        saving = round(current - fargate, 2)
        if saving < policy.min_monthly_saving_usd:
            continue
        estimated = hour.estimated or vcpu_hour.estimated or gb_hour.estimated
        found.append(Finding(
            kind=SERVERLESS_INSTANCE, resource_id=i.instance_id, severity=Severity.INFO,
            reason=(f"{i.instance_type} busy in {load.busy} of {load.hours} hours ({load.share:.1%}; hourly average "
                    f"CPU above {policy.busy_hour_cpu_percent:g}%, p95 {load.p95:g}%, busy UTC hours "
                    f"{_hours(load.busy_hours_of_day)}): a Fargate candidate. Now ${current:,.2f}/month; as a "
                    f"{cpu} vCPU / {gib:g} GiB Fargate task ({arch}) running only in its {load.busy_per_month:.0f} busy "
                    f"hours a month ${fargate:,.2f}/month: saves {_money(saving, estimated, keys[1])}. Assumes the work "
                    f"can be started on demand (a scheduled or queued task) and needs the instance's vCPU and memory "
                    f"only in its busy hours; Lambda not priced: hourly figures cannot show whether each run ends "
                    f"within Lambda's 15 minutes."),
            numbers={"busy_hours": load.busy, "hours": load.hours, "busy_percent": round(load.share * 100, 1),
                     "cpu_median": load.median, "cpu_p95": load.p95, "busy_utc_hours": load.busy_hours_of_day,
                     "instance_type": i.instance_type, "fargate_vcpu": cpu, "fargate_gib": gib,
                     "current_monthly_usd": current, "fargate_monthly_usd": fargate, "estimated_price": estimated},
            monthly_cost_usd=saving))
    return found


def judge_aurora_serverless(dbs: Iterable, cpu_hourly: Mapping[str, Series], connections_hourly: Mapping[str, Series],
                            sizes: Mapping[str, Mapping], policy: ComputePolicy, prices: PriceTable,
                            skip: Collection[str] = ()) -> list[Finding]:
    """RDS PostgreSQL and MySQL instances busy in at most `aurora_max_busy_percent` of the hours
    (idle, or spiky): their instance hours against Aurora Serverless v2 at the class's memory in
    ACUs in the busy hours and `aurora_min_acu` in the others, reported when that is cheaper.
    `sizes`: DescribeInstanceTypes' `memory_mib` by EC2 type (the class without `db.`)."""
    found = []
    for d in dbs:
        load = hourly_load(cpu_hourly.get(d.db_id, []), policy.busy_hour_cpu_percent)
        memory_mib = (sizes.get(d.db_class.removeprefix("db.")) or {}).get("memory_mib")
        # Aurora members are Aurora already; a replica moves with its source.
        if (d.status != "available" or d.cluster_id or d.replica_of or d.engine not in AURORA_ENGINES
                or d.db_id in skip or not _measured(load, policy)
                or load.share * 100 > policy.aurora_max_busy_percent or not memory_mib):
            continue
        keys = (f"rds:{d.db_class}:hour", "aurora:serverless-v2:acu-hour")
        try:
            hour, acu_hour = comparable(prices, d.region, *keys)
        except KeyError:
            continue
        gib = memory_mib / 1024
        acus = min(MAX_ACU, max(policy.aurora_min_acu, math.ceil(gib / ACU_GIB * 2) / 2))
        copies = MULTI_AZ_FACTOR if d.multi_az else 1
        current = round(hour.usd * HOURS_PER_MONTH * copies, 2)
        acu_hours = load.busy_per_month * acus + (HOURS_PER_MONTH - load.busy_per_month) * policy.aurora_min_acu
        aurora = round(acu_hours * acu_hour.usd * copies, 2)
        saving = round(current - aurora, 2)
        if saving < policy.min_monthly_saving_usd:
            continue
        connected = sum(1 for _, v in connections_hourly.get(d.db_id, []) if v > 0)
        estimated = hour.estimated or acu_hour.estimated
        pattern = "spiky" if load.busy else "idle"
        reader = ", with a reader of the same capacity for Multi-AZ" if d.multi_az else ""
        found.append(Finding(
            kind=AURORA_SERVERLESS, resource_id=d.db_id, severity=Severity.INFO,
            reason=(f"{d.engine} {d.db_class}{' Multi-AZ' if d.multi_az else ''} {pattern}: busy in {load.busy} of "
                    f"{load.hours} hours ({load.share:.1%}; hourly average CPU above {policy.busy_hour_cpu_percent:g}%, "
                    f"median {load.median:g}%, p95 {load.p95:g}%), connected in {connected} hours: an Aurora "
                    f"Serverless v2 candidate ({AURORA_ENGINES[d.engine]}). Now ${current:,.2f}/month of instance "
                    f"hours; at {acus:g} ACU (the class's {gib:g} GiB at about {ACU_GIB} GiB an ACU) in its "
                    f"{load.busy_per_month:.0f} busy hours a month and {policy.aurora_min_acu:g} ACU in the others"
                    f"{reader} ${aurora:,.2f}/month: saves {_money(saving, estimated, keys[1])}. Assumes Aurora "
                    f"Standard and compares instance hours only (storage, I/O requests and backups not compared)."),
            numbers={"busy_hours": load.busy, "hours": load.hours, "busy_percent": round(load.share * 100, 1),
                     "cpu_median": load.median, "cpu_p95": load.p95, "connected_hours": connected,
                     "db_class": d.db_class, "multi_az": d.multi_az, "acu_busy": acus,
                     "acu_quiet": policy.aurora_min_acu, "current_monthly_usd": current,
                     "aurora_monthly_usd": aurora, "estimated_price": estimated},
            monthly_cost_usd=saving))
    return found
