"""Data integrity: pipelines as data, what to measure on each table, and the pure judgement.

A pipeline copies rows from a source table to a target table. Each run measures both sides
(count, newest timestamp, counts per day, optionally an order-independent checksum) and
`judge_pipeline` decides: do the counts agree within tolerance, is the target fresh, did the
content change with equal counts, is today's volume unusual against the recorded history.

Pipelines are declared in YAML (or a block holding the same list):

```yaml
pipelines:
  - name: orders
    owner: "@data-eng"
    source: {connection: app-db, table: public.orders, day_column: created_at,
             filter: "updated_at < now() - interval '15 minutes'"}
    target: {connection: analytics, table: raw.orders, day_column: created_at,
             freshness_column: loaded_at}
    window_days: 7
    tolerance_rows: 10
    freshness_sla_minutes: 90
    checksum_columns: [id, status, amount_cents]
```
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rules.config import ConfigError
from rules.findings import Coverage, Finding, Severity

JOB = "data-integrity"
VOLUME_HISTORY_DAYS = 14
VOLUME_MIN_POINTS = 7  # fewer recorded counts than this say nothing about "normal"
MAX_DAYS_IN_REASON = 5

# BigQuery has no client-side identifier quoting, so its names are checked against its own
# naming rules and then backquoted; PostgreSQL names are quoted by the driver and may be anything.
_BQ_PROJECT = re.compile(r"^[a-z][a-z0-9.:-]{0,61}[a-z0-9]$")
_BQ_DATASET = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_BQ_TABLE = re.compile(r"^[A-Za-z0-9_-]{1,1024}$")
_BQ_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")
# Snowflake names are used unquoted, so resolved as Snowflake does (upper case): plain identifiers only.
_SF_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,254}$")


class TableSide(BaseModel):
    """One end of a pipeline: which table, through which connection, and how to read it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Literal["postgres", "bigquery", "snowflake"] = Field(
        default="postgres",
        description="`postgres` (PostgreSQL, Redshift, Aurora), `bigquery` or `snowflake`.",
    )
    connection: str = Field(
        min_length=1,
        description=(
            "Block name: a WarehouseConnection for `postgres`, a GcpCredentials block for "
            "`bigquery`, a prefect-snowflake SnowflakeConnector for `snowflake`."
        ),
    )
    table: str = Field(
        min_length=1,
        description="`schema.table` (postgres), `project.dataset.table` (bigquery), "
                    "`database.schema.table` or `schema.table` in the connector's database (snowflake).",
    )
    filter: str | None = Field(
        default=None,
        description=(
            "A SQL boolean expression on this table, e.g. "
            "`updated_at < now() - interval '15 minutes'`. Comes only from this file."
        ),
    )
    freshness_column: str | None = Field(
        default=None, description="Timestamp column whose maximum says how fresh the table is."
    )
    day_column: str | None = Field(
        default=None,
        description="Date or timestamp column for counts per day (UTC) and `window_days`.",
    )

    @field_validator("filter")
    @classmethod
    def _one_expression(cls, value: str | None) -> str | None:
        # The filter is trusted config text, but one expression only: no statement stacking.
        if value is not None and (";" in value or "--" in value or "/*" in value):
            raise ValueError("one boolean expression, without `;` or SQL comments")
        return value

    @property
    def table_parts(self) -> tuple[str, ...]:
        return tuple(self.table.split("."))

    @model_validator(mode="after")
    def _names_fit_engine(self) -> TableSide:
        parts = self.table_parts
        if any(not p for p in parts):
            raise ValueError(f"table: {self.table!r} has an empty name part")
        if self.engine == "postgres" and len(parts) > 2:
            raise ValueError(f"table: {self.table!r} must be `table` or `schema.table`")
        if self.engine == "bigquery":
            if len(parts) != 3:
                raise ValueError(f"table: {self.table!r} must be `project.dataset.table`")
            project, dataset, table = parts
            if not (_BQ_PROJECT.match(project) and _BQ_DATASET.match(dataset)
                    and _BQ_TABLE.match(table)):
                raise ValueError(f"table: {self.table!r} is not a valid BigQuery table name")
            for name in ("freshness_column", "day_column"):
                column = getattr(self, name)
                if column is not None and not _BQ_COLUMN.match(column):
                    raise ValueError(f"{name}: {column!r} is not a valid BigQuery column name")
        if self.engine == "snowflake":
            if len(parts) > 3 or not all(_SF_NAME.match(part) for part in parts):
                raise ValueError(f"table: {self.table!r} must be `database.schema.table` (or `schema.table`) "
                                 "of unquoted Snowflake names (letters, digits, `_`, `$`)")
            for name in ("freshness_column", "day_column"):
                column = getattr(self, name)
                if column is not None and not _SF_NAME.match(column):
                    raise ValueError(f"{name}: {column!r} is not an unquoted Snowflake column name")
        return self

    @property
    def label(self) -> str:
        return f"{self.connection}/{self.table}"


class Pipeline(BaseModel):
    """A pipeline whose target should hold what its source has, and be fresh."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Unique name.")
    owner: str = Field(default="", description="Who is mentioned in the alert, e.g. `@data-eng`.")
    source: TableSide | None = Field(
        default=None, description="Where the rows come from; omit to watch the target alone."
    )
    target: TableSide = Field(description="Where the rows should arrive.")
    window_days: int | None = Field(
        default=None, ge=1, le=3660,
        description="Compare only the last N days (by each side's `day_column`, UTC).",
    )
    tolerance_rows: int = Field(default=0, ge=0, description="Allowed count difference in rows.")
    tolerance_pct: float = Field(
        default=0.0, ge=0, le=100, description="Allowed count difference, % of the source count."
    )
    freshness_sla_minutes: int | None = Field(
        default=None, ge=1, description="Newest target row may be at most this old."
    )
    checksum_columns: list[str] = Field(
        default_factory=list,
        description="Columns hashed (order-independent, in the database) on both sides.",
    )
    volume_z_threshold: float | None = Field(
        default=3.0, gt=0,
        description="Warn when the target count is this many standard deviations off the last "
        "14 days of recorded counts; null turns the check off.",
    )

    @model_validator(mode="after")
    def _coherent(self) -> Pipeline:
        sides = [s for s in (self.source, self.target) if s is not None]
        if self.window_days is not None:
            for role, side in (("source", self.source), ("target", self.target)):
                if side is not None and not side.day_column:
                    raise ValueError(f"{role}.day_column: required with window_days")
        if self.freshness_sla_minutes is not None and not self.target.freshness_column:
            raise ValueError("target.freshness_column: required with freshness_sla_minutes")
        if self.checksum_columns:
            if self.source is None:
                raise ValueError("checksum_columns: needs a source to compare with")
            if any(s.engine == "bigquery" for s in sides):
                bad = [c for c in self.checksum_columns if not _BQ_COLUMN.match(c)]
                if bad:
                    raise ValueError(f"checksum_columns: {bad} are not valid BigQuery column names")
            if any(s.engine == "snowflake" for s in sides):
                bad = [c for c in self.checksum_columns if not _SF_NAME.match(c)]
                if bad:
                    raise ValueError(f"checksum_columns: {bad} are not unquoted Snowflake column names")
        return self


class PipelinesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pipelines: list[dict[str, Any]] = Field(description="The pipelines to check.")


def _field_error(origin: str, pipeline: str, error: Mapping[str, Any]) -> str:
    where = ".".join(str(p) for p in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    field_part = f", field `{where}`" if where else ""
    return f"{origin}: pipeline {pipeline!r}{field_part}: {message}"


def parse_pipelines(data: Any, origin: str) -> list[Pipeline]:
    """Validate pipeline declarations; every error names the pipeline and the field.

    `data` is the loaded YAML (`{"pipelines": [...]}`) or the bare list; `origin` says where
    it came from (file or block) so the message points at what to edit.
    """
    if isinstance(data, list):
        data = {"pipelines": data}
    try:
        raw = PipelinesFile.model_validate(data).pipelines
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "pipelines"
        raise ConfigError(
            f"{origin}: field `{where}`: {first['msg']} (expected `pipelines:` with a list of "
            f"pipelines)"
        ) from None
    problems: list[str] = []
    result: list[Pipeline] = []
    for index, item in enumerate(raw):
        label = str(item.get("name") or f"#{index + 1}")
        try:
            result.append(Pipeline.model_validate(item))
        except ValidationError as exc:
            problems += [_field_error(origin, label, e) for e in exc.errors()]
    names = [p.name for p in result]
    problems += [
        f"{origin}: pipeline {n!r}, field `name`: declared more than once"
        for n in sorted({n for n in names if names.count(n) > 1})
    ]
    if problems:
        raise ConfigError("; ".join(problems))
    if not result:
        raise ConfigError(f"{origin}: field `pipelines`: declare at least one pipeline")
    return result


# --- what to measure ------------------------------------------------------------------


@dataclass(frozen=True)
class TableQuery:
    """Everything the measure step needs for one table, taken only from the config."""

    pipeline: str
    role: Literal["source", "target"]
    side: TableSide
    checksum_columns: tuple[str, ...] = ()
    window_start: date | None = None

    @property
    def id(self) -> str:
        return f"{self.pipeline}:{self.role}"


def plan_queries(pipelines: Sequence[Pipeline], now: datetime) -> list[TableQuery]:
    """One query per table per run."""
    queries = []
    for p in pipelines:
        start = now.date() - timedelta(days=p.window_days) if p.window_days else None
        for role, side in (("source", p.source), ("target", p.target)):
            if side is not None:
                queries.append(TableQuery(p.name, role, side, tuple(p.checksum_columns), start))
    return queries


@dataclass(frozen=True)
class TableMeasurement:
    """What one query says about one table (within its filter and window)."""

    count: int
    latest: datetime | None = None
    by_day: dict[str, int] = field(default_factory=dict)  # ISO day -> rows
    checksum: int | None = None
    checksum_by_day: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TableError:
    """Why a table could not be measured; `missing` when the table does not exist."""

    message: str
    missing: bool = False
    broken: bool = False  # the declared check cannot run as written (an unknown column, a bad filter)


Measured = TableMeasurement | TableError


# --- judgement ------------------------------------------------------------------------


def allowed_difference(p: Pipeline, source_count: int) -> float:
    return max(p.tolerance_rows, source_count * p.tolerance_pct / 100)


def day_differences(source: Mapping[str, int], target: Mapping[str, int]) -> list[tuple[str, int, int]]:
    """(day, source rows, target rows) for every day where the two sides disagree."""
    days = sorted(set(source) | set(target))
    return [(d, source.get(d, 0), target.get(d, 0)) for d in days
            if source.get(d, 0) != target.get(d, 0)]


def volume_z_score(count: float, history: Sequence[float]) -> float | None:
    """How unusual `count` is against past counts; None without enough history."""
    if len(history) < VOLUME_MIN_POINTS:
        return None
    mean = sum(history) / len(history)
    stdev = math.sqrt(sum((h - mean) ** 2 for h in history) / (len(history) - 1))
    return (count - mean) / max(stdev, 1.0)  # a flat history still tolerates one row


def _days_text(diffs: Sequence[tuple[str, int, int]]) -> str:
    shown = [f"{d} ({s:,} vs {t:,})" for d, s, t in diffs[:MAX_DAYS_IN_REASON]]
    more = f" and {len(diffs) - len(shown)} more days" if len(diffs) > len(shown) else ""
    return ", ".join(shown) + more


def _minutes(delta: timedelta | None) -> float | None:
    return None if delta is None else round(delta.total_seconds() / 60, 1)


@dataclass
class Verdict:
    """The judgement of one pipeline: findings, a report row, metric points, errors."""

    findings: list[Finding]
    row: dict[str, Any]
    metrics: list[dict[str, Any]]
    errors: dict[str, str]
    complete: bool  # False when a table could not be read (other than being missing)


def judge_pipeline(
    p: Pipeline,
    measured: Mapping[str, Measured],
    history: Sequence[float],
    now: datetime,
) -> Verdict:
    """Judge one pipeline from its measurements (`source`/`target` keys) and count history."""
    scope = p.target.label
    owner = f" Owner: {p.owner}." if p.owner else ""
    findings: list[Finding] = []
    errors: dict[str, str] = {}
    statuses: list[str] = []
    details: list[str] = []

    def finding(kind: str, severity: Severity, reason: str, **numbers: Any) -> None:
        findings.append(Finding(kind=kind, resource_id=p.name, scope=scope, severity=severity,
                                reason=reason + owner, numbers={"owner": p.owner, **numbers}))
        statuses.append(kind)

    sides = {"source": p.source, "target": p.target}
    for role, result in measured.items():
        if isinstance(result, TableError):
            side = sides[role]
            errors[f"{p.name} {role} {side.label}"] = result.message
            details.append(f"{role}: {result.message}")
            if result.missing:
                finding("missing-table", Severity.CRITICAL,
                        f"{role} table {side.table} ({side.connection}) does not exist.",
                        role=role, table=side.table)
            elif result.broken:  # not an outage: it will fail the same way every run until fixed
                finding("broken-check", Severity.WARNING,
                        f"the {role} check of {side.table} ({side.connection}) cannot run: {result.message}; "
                        "fix the pipeline's declaration (columns, filter) in the pipelines file or block.",
                        role=role, table=side.table)
            elif "error" not in statuses:
                statuses.append("error")
    complete = not any(isinstance(r, TableError) and not r.missing for r in measured.values())
    source = measured.get("source")
    target = measured.get("target")
    src = source if isinstance(source, TableMeasurement) else None
    tgt = target if isinstance(target, TableMeasurement) else None

    diff = None
    if src is not None and tgt is not None:
        diff = tgt.count - src.count
        allowed = allowed_difference(p, src.count)
        days = day_differences(src.by_day, tgt.by_day) if p.source.day_column and p.target.day_column else []
        if abs(diff) > allowed:
            where = f" Differences on {_days_text(days)}." if days else ""
            finding(
                "row-count-mismatch", Severity.CRITICAL,
                f"target has {abs(diff):,} {'fewer' if diff < 0 else 'more'} rows than source "
                f"({tgt.count:,} vs {src.count:,}; allowed {allowed:,.0f}).{where}",
                source_count=src.count, target_count=tgt.count, diff=diff, allowed=allowed,
                days=[{"day": d, "source": s, "target": t} for d, s, t in days],
            )
            if days:
                details.append(f"by day: {_days_text(days)}")
        elif src.checksum is not None and tgt.checksum is not None and src.checksum != tgt.checksum:
            changed = [d for d in sorted(set(src.checksum_by_day) | set(tgt.checksum_by_day))
                       if src.checksum_by_day.get(d) != tgt.checksum_by_day.get(d)]
            where = f" Changed rows on {', '.join(changed[:MAX_DAYS_IN_REASON])}." if changed else ""
            finding(
                "checksum-mismatch", Severity.CRITICAL,
                f"counts agree ({tgt.count:,}) but the content of "
                f"{', '.join(p.checksum_columns)} differs.{where}",
                source_count=src.count, target_count=tgt.count, days=changed,
            )
            if changed:
                details.append(f"content differs on {', '.join(changed[:MAX_DAYS_IN_REASON])}")

    lag = now - tgt.latest if tgt is not None and tgt.latest is not None else None
    source_lag = now - src.latest if src is not None and src.latest is not None else None
    if tgt is not None and p.freshness_sla_minutes is not None:
        sla = timedelta(minutes=p.freshness_sla_minutes)
        context = f" Source lag {_minutes(source_lag):,} min." if source_lag is not None else ""
        if lag is None:
            finding("stale-data", Severity.CRITICAL,
                    f"target has no rows with {p.target.freshness_column}; SLA "
                    f"{p.freshness_sla_minutes} min.{context}", sla_minutes=p.freshness_sla_minutes)
        elif lag > sla:
            finding("stale-data", Severity.CRITICAL,
                    f"newest target row is {_minutes(lag):,} min old (SLA "
                    f"{p.freshness_sla_minutes} min).{context}",
                    lag_minutes=_minutes(lag), sla_minutes=p.freshness_sla_minutes,
                    source_lag_minutes=_minutes(source_lag))

    if tgt is not None and p.volume_z_threshold is not None:
        z = volume_z_score(tgt.count, history)
        if z is not None and abs(z) > p.volume_z_threshold:
            mean = sum(history) / len(history)
            finding("volume-anomaly", Severity.WARNING,
                    f"target count {tgt.count:,} is {z:+.1f} standard deviations from the "
                    f"{VOLUME_HISTORY_DAYS}-day mean {mean:,.0f} ({len(history)} runs).",
                    count=tgt.count, mean=round(mean, 1), z_score=round(z, 2))

    metrics = []
    for name, value in (("source_rows", src.count if src else None),
                        ("target_rows", tgt.count if tgt else None),
                        ("row_diff", diff),
                        ("target_lag_minutes", _minutes(lag)),
                        ("source_lag_minutes", _minutes(source_lag))):
        if value is not None:
            metrics.append({"name": name, "subject": p.name, "ts": now, "value": value})

    row = {
        "pipeline": p.name,
        "source_count": src.count if src else "",
        "target_count": tgt.count if tgt else "",
        "diff": diff if diff is not None else "",
        "lag_minutes": _minutes(lag) if lag is not None else "",
        "status": ", ".join(statuses) or "ok",
        "detail": "; ".join(details),
        "owner": p.owner,
    }
    return Verdict(findings, row, metrics, errors, complete)


def recent_counts(points: Sequence[Mapping[str, Any]], now: datetime) -> list[float]:
    """Recorded target counts from the last 14 days, oldest first (the volume baseline)."""
    since = now - timedelta(days=VOLUME_HISTORY_DAYS)
    return [float(r["value"]) for r in points
            if r["value"] is not None and since <= r["ts"] < now]


def coverage_of(pipelines: Sequence[Pipeline], verdicts: Sequence[Verdict]) -> Coverage:
    """Where each pipeline's findings live (its target), and which pipelines were not fully
    measured: a connection that fails proves nothing, so their findings stay open."""
    coverage = Coverage()
    for p, v in zip(pipelines, verdicts, strict=True):
        coverage.mark_read(p.target.label)
        if not v.complete:
            coverage.fail(p.target.label, "; ".join(v.errors.values()) or "not measured", resource_prefix=p.name)
    return coverage
