"""Judging a Redshift cluster's (or Serverless workgroup's) health from CloudWatch and WLM state.

Pure: series of CloudWatch values and WLM queue records in, findings and metric points out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from statistics import fmean

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rules.findings import Finding, Severity

METRIC_KINDS = {"redshift-unhealthy", "redshift-maintenance", "redshift-cpu-high",
                "redshift-disk-high", "redshift-connections-high", "redshift-rpu-high"}
QUEUE_KINDS = {"redshift-queue-backlog", "redshift-queue-wait"}
SPILL_KINDS = {"redshift-disk-spill"}
CHECK_KINDS = {"queues": QUEUE_KINDS, "spill": SPILL_KINDS}  # a failed SQL check hides these


class Threshold(BaseModel):
    """Warn at or above `warn`, critical at or above `critical`."""

    model_config = ConfigDict(extra="forbid")

    warn: float = Field(ge=0, description="Warning at or above this value.")
    critical: float = Field(ge=0, description="Critical at or above this value.")

    @model_validator(mode="after")
    def _ordered(self) -> Threshold:
        if self.critical < self.warn:
            raise ValueError("critical must be >= warn")
        return self

    def severity(self, value: float) -> Severity | None:
        if value >= self.critical:
            return Severity.CRITICAL
        if value >= self.warn:
            return Severity.WARNING
        return None


class RedshiftHealthPolicy(BaseModel):
    """Per-metric thresholds; CPU and connections are judged on the window's average / peak."""

    model_config = ConfigDict(extra="forbid")

    lookback_minutes: int = Field(
        default=15, ge=5, le=1440, description="CloudWatch window judged each run."
    )
    cpu_percent: Threshold = Field(
        default=Threshold(warn=80, critical=95), description="Average CPUUtilization over the window."
    )
    disk_percent: Threshold = Field(
        default=Threshold(warn=80, critical=90), description="Latest PercentageDiskSpaceUsed."
    )
    connections: Threshold = Field(
        default=Threshold(warn=400, critical=475),
        description="Peak DatabaseConnections (most node types allow 500).",
    )
    rpu: Threshold = Field(
        default=Threshold(warn=256, critical=512),
        description="Serverless: peak ComputeCapacity (RPUs) in use.",
    )
    queued_queries: Threshold = Field(
        default=Threshold(warn=5, critical=20), description="Queries waiting in one WLM queue now."
    )
    queue_wait_minutes: Threshold = Field(
        default=Threshold(warn=5, critical=15),
        description="Longest current wait of a query in one WLM queue.",
    )
    spilled_query_percent: Threshold = Field(
        default=Threshold(warn=5, critical=20),
        description="Share of the window's queries that spilled to disk (Redshift's sign of memory pressure).",
    )
    repeat_interval_hours: float = Field(
        default=4, gt=0, description="Remind about a finding still open after this many hours."
    )


@dataclass(frozen=True)
class WlmQueue:
    """One WLM queue right now (Serverless: the workgroup as a whole)."""

    queue: str
    service_class: int
    slots: int | None
    queued: int
    executing: int
    longest_wait_s: float


@dataclass(frozen=True)
class MetricSpec:
    """How one CloudWatch metric is read and judged."""

    key: str  # our name, also the metric name in the store: `redshift.<key>`
    metric: str  # the CloudWatch metric name
    stat: str
    summary: str  # mean | last | max | min
    unit: str


PROVISIONED_METRICS = (
    MetricSpec("cpu_percent", "CPUUtilization", "Average", "mean", "%"),
    MetricSpec("disk_percent", "PercentageDiskSpaceUsed", "Average", "last", "%"),
    MetricSpec("connections", "DatabaseConnections", "Maximum", "max", ""),
    MetricSpec("health_status", "HealthStatus", "Minimum", "min", ""),
    MetricSpec("maintenance_mode", "MaintenanceMode", "Maximum", "max", ""),
)
SERVERLESS_METRICS = (MetricSpec("rpu", "ComputeCapacity", "Maximum", "max", " RPU"),)

_SUMMARIES = {"mean": fmean, "last": lambda v: v[-1], "max": max, "min": min}


def summarize(specs: Sequence[MetricSpec], series: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """One number per metric over the window (metrics without datapoints are left out)."""
    return {s.key: _SUMMARIES[s.summary](series[s.key]) for s in specs if series.get(s.key)}


def judge_metrics(
    target: str, scope: str, values: Mapping[str, float], policy: RedshiftHealthPolicy
) -> list[Finding]:
    """Findings for one cluster or workgroup from its summarized CloudWatch metrics."""
    found = []
    window = f"last {policy.lookback_minutes} min"
    if values.get("health_status", 1) < 1:
        found.append(Finding(
            kind="redshift-unhealthy", resource_id=target, scope=scope, severity=Severity.CRITICAL,
            reason=f"HealthStatus reported unhealthy in the {window}: the cluster did not answer "
                   "its health check query.",
            numbers={"health_status": values["health_status"]}))
    if values.get("maintenance_mode", 0) >= 1:
        found.append(Finding(
            kind="redshift-maintenance", resource_id=target, scope=scope, severity=Severity.WARNING,
            reason=f"in maintenance mode in the {window}: queries may be refused or slow.",
            numbers={"maintenance_mode": values["maintenance_mode"]}))
    checks = [("cpu_percent", "redshift-cpu-high", "CPU", "average", "%", policy.cpu_percent),
              ("disk_percent", "redshift-disk-high", "disk space used", "latest", "%",
               policy.disk_percent),
              ("connections", "redshift-connections-high", "database connections", "peak", "",
               policy.connections),
              ("rpu", "redshift-rpu-high", "compute capacity", "peak", " RPU", policy.rpu)]
    for key, kind, label, how, unit, threshold in checks:
        if key not in values:
            continue
        severity = threshold.severity(values[key])
        if severity:
            limit = threshold.critical if severity is Severity.CRITICAL else threshold.warn
            found.append(Finding(
                kind=kind, resource_id=target, scope=scope, severity=severity,
                reason=f"{label} {how} {values[key]:.0f}{unit} in the {window} "
                       f"(≥ {limit:g}{unit} is {severity.value}).",
                numbers={key: round(values[key], 2), "warn": threshold.warn,
                         "critical": threshold.critical}))
    return found


def judge_queues(
    target: str, scope: str, queues: Sequence[WlmQueue], policy: RedshiftHealthPolicy
) -> list[Finding]:
    """Findings for WLM queues with too many queued queries or too long a wait."""
    found = []
    for q in queues:
        resource = f"{target}/{q.queue}"
        numbers = {"queue": q.queue, "service_class": q.service_class, "slots": q.slots,
                   "queued": q.queued, "executing": q.executing,
                   "longest_wait_s": round(q.longest_wait_s)}
        severity = policy.queued_queries.severity(q.queued)
        if severity:
            found.append(Finding(
                kind="redshift-queue-backlog", resource_id=resource, scope=scope, severity=severity,
                reason=f"{q.queued} queries queued in WLM queue {q.queue} "
                       f"({q.executing} executing on {q.slots if q.slots is not None else '?'} slots).",
                numbers=numbers))
        wait_min = q.longest_wait_s / 60
        severity = policy.queue_wait_minutes.severity(wait_min) if q.queued else None
        if severity:
            found.append(Finding(
                kind="redshift-queue-wait", resource_id=resource, scope=scope, severity=severity,
                reason=f"a query has waited {wait_min:.1f} min in WLM queue {q.queue} "
                       f"(≥ {policy.queue_wait_minutes.warn:g} min is a warning).",
                numbers=numbers))
    return found


@dataclass(frozen=True)
class Spill:
    """Queries of the last `minutes` and how many of them spilled to disk (MB in all)."""

    queries: int
    spilled: int
    spilled_mb: float
    minutes: int

    @property
    def percent(self) -> float:
        return 100 * self.spilled / self.queries if self.queries else 0.0


def judge_spill(target: str, scope: str, spill: Spill | None, policy: RedshiftHealthPolicy) -> list[Finding]:
    """Memory pressure: too large a share of recent queries spilled to disk."""
    severity = policy.spilled_query_percent.severity(spill.percent) if spill and spill.spilled else None
    if not severity:
        return []
    return [Finding(
        kind="redshift-disk-spill", resource_id=target, scope=scope, severity=severity,
        reason=(f"{spill.spilled} of {spill.queries} queries in the last {spill.minutes} min spilled to disk "
                f"({spill.percent:.0f}%, {spill.spilled_mb / 1024:,.1f} GB): they ran out of memory. Give "
                "their WLM queue more memory, or find the spilling steps in SYS_QUERY_DETAIL."),
        numbers={"queries": spill.queries, "spilled": spill.spilled, "spilled_percent": round(spill.percent, 1),
                 "spilled_mb": spill.spilled_mb, "warn": policy.spilled_query_percent.warn,
                 "critical": policy.spilled_query_percent.critical})]


def metric_points(
    target: str, now: datetime, values: Mapping[str, float], queues: Sequence[WlmQueue],
    spill: Spill | None = None,
) -> list[dict]:
    """Rows for the store's metric history: trends and dashboards."""
    rows = [{"name": f"redshift.{k}", "subject": target, "ts": now, "value": float(v)}
            for k, v in sorted(values.items())]
    if spill is not None:
        rows += [{"name": "redshift.spill.percent", "subject": target, "ts": now, "value": spill.percent},
                 {"name": "redshift.spill.mb", "subject": target, "ts": now, "value": spill.spilled_mb}]
    for q in queues:
        subject = f"{target}/{q.queue}"
        rows += [
            {"name": "redshift.wlm.queued", "subject": subject, "ts": now, "value": float(q.queued)},
            {"name": "redshift.wlm.executing", "subject": subject, "ts": now,
             "value": float(q.executing)},
            {"name": "redshift.wlm.longest_wait_s", "subject": subject, "ts": now,
             "value": float(q.longest_wait_s)},
        ]
    return rows
