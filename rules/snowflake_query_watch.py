"""Judging running and blocked Snowflake queries; deciding what may be cancelled.

Pure. The live queries come from INFORMATION_SCHEMA.QUERY_HISTORY (real time: RUNNING, QUEUED,
BLOCKED, RESUMING_WAREHOUSE); who blocks whom from ACCOUNT_USAGE.LOCK_WAIT_HISTORY
(`blocker_queries`), which lags: a blocked query whose blocker it does not show yet is reported
as blocked, with that said. Our own queries (tagged) are never judged nor cancelled.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import Field, model_validator

from rules.config import ActingPolicy
from rules.findings import Finding, Severity
from rules.snowflake import SnowflakePolicy
from rules.text import mask_sql_literals

QUERY_TEXT_CHARS = 300
KIND_LONG = "snowflake-long-query"
KIND_BLOCKER = "snowflake-lock-blocker"
KIND_BLOCKED = "snowflake-blocked-query"
RUNNING = frozenset({"RUNNING", "QUEUED", "RESUMING_WAREHOUSE"})


@dataclass(frozen=True)
class LiveQuery:
    """A query that is running, queued or blocked right now."""

    account: str
    query_id: str
    user: str
    warehouse: str
    status: str
    start: datetime
    elapsed_ms: float
    blocked_ms: float = 0.0
    text: str = ""
    role: str = ""
    tag: str = ""


@dataclass(frozen=True)
class LockWait:
    """LOCK_WAIT_HISTORY: one statement that waited (or waits) for a lock, and who held it."""

    account: str
    query_id: str
    object_name: str
    requested_at: datetime
    acquired_at: datetime | None
    blockers: tuple[tuple[str, str], ...]  # (query id, transaction id) of each blocker


@dataclass(frozen=True)
class PlannedCancel:
    """SYSTEM$CANCEL_QUERY of one query: which, whose, why."""

    account: str
    query_id: str
    user: str
    reason: str


class SnowflakeQueryWatchPolicy(SnowflakePolicy, ActingPolicy):
    """Thresholds of the Snowflake query watch, and when it may offer to cancel."""

    repeat_interval_hours: float = Field(default=4, ge=1, description="Hours before a still-open finding is announced again.")
    long_query_warn_minutes: float = Field(default=60, gt=0, description="A query running longer is reported (warning).")
    long_query_critical_minutes: float = Field(default=240, gt=0, description="A query running longer is critical.")
    blocked_warn_minutes: float = Field(default=5, gt=0, description="A query blocked on a lock longer is reported.")
    blocked_critical_minutes: float = Field(default=30, gt=0, description="A query blocked longer is critical.")
    lock_lookback_hours: float = Field(
        default=6, gt=0, le=48, description="How far back LOCK_WAIT_HISTORY is read for the blockers of blocked queries.",
    )
    cancel_queries_over_minutes: float | None = Field(
        default=None, gt=0, description="Offer to cancel queries running longer (apply=true, a person approves). Empty: never.",
    )
    cancel_blockers_over_minutes: float | None = Field(
        default=None, gt=0,
        description="Offer to cancel a blocker's running query once a query waited on it this long. Empty: never.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> SnowflakeQueryWatchPolicy:
        if self.long_query_critical_minutes < self.long_query_warn_minutes:
            raise ValueError("long_query_critical_minutes must be >= long_query_warn_minutes")
        if self.blocked_critical_minutes < self.blocked_warn_minutes:
            raise ValueError("blocked_critical_minutes must be >= blocked_warn_minutes")
        return self


def _minutes(ms: float) -> str:
    return f"{ms / 3_600_000:.1f} h" if ms >= 3_600_000 else f"{ms / 60_000:.0f} min"


def _text(q: LiveQuery) -> str:
    return mask_sql_literals(q.text, QUERY_TEXT_CHARS)


def judge_long_queries(live: Iterable[LiveQuery], policy: SnowflakeQueryWatchPolicy, own_tag: str) -> list[Finding]:
    """Queries running (or queued) past the warn threshold; critical past the critical one."""
    warn, crit = policy.long_query_warn_minutes * 60_000, policy.long_query_critical_minutes * 60_000
    found = []
    for q in sorted(live, key=lambda q: -q.elapsed_ms):
        if q.status not in RUNNING or q.tag == own_tag or q.elapsed_ms < warn:
            continue
        found.append(Finding(
            kind=KIND_LONG, resource_id=q.query_id, scope=q.account,
            severity=Severity.CRITICAL if q.elapsed_ms >= crit else Severity.WARNING,
            reason=(f"{q.user}'s query on {q.warehouse} has been {q.status.lower()} for {_minutes(q.elapsed_ms)} "
                    f"(limit {_minutes(warn)}): {_text(q)}"),
            numbers={"user": q.user, "role": q.role, "warehouse": q.warehouse, "status": q.status,
                     "started": q.start.isoformat(), "elapsed_s": round(q.elapsed_ms / 1000), "query": _text(q)},
        ))
    return found


@dataclass(frozen=True)
class Blocker:
    """A query (or an open transaction) others wait for, with the queries waiting on it."""

    account: str
    query_id: str
    transaction_id: str
    running: LiveQuery | None  # the blocker's statement, when it is still live
    waiting: tuple[LiveQuery, ...]
    objects: tuple[str, ...]

    @property
    def oldest_wait_ms(self) -> float:
        return max(w.blocked_ms for w in self.waiting)


def blockers_of(live: Sequence[LiveQuery], waits: Iterable[LockWait]) -> tuple[list[Blocker], list[LiveQuery]]:
    """Blocked live queries grouped by their blocker; and those whose blocker is not known yet."""
    by_id = {q.query_id: q for q in live}
    waits_of: dict[str, LockWait] = {}
    for w in sorted(waits, key=lambda w: w.requested_at):
        if w.blockers and (w.acquired_at is None or w.query_id not in waits_of):
            waits_of[w.query_id] = w  # the latest wait still open wins
    groups: dict[tuple[str, str], list[tuple[LiveQuery, str]]] = defaultdict(list)
    unknown = []
    for q in live:
        if q.status != "BLOCKED":
            continue
        wait = waits_of.get(q.query_id)
        if wait is None:
            unknown.append(q)
            continue
        query_id, transaction_id = wait.blockers[0]  # the first one held the lock when the wait began
        groups[(query_id, transaction_id)].append((q, wait.object_name))
    blockers = [
        Blocker(members[0][0].account, query_id, transaction_id, by_id.get(query_id),
                tuple(sorted((q for q, _ in members), key=lambda q: -q.blocked_ms)),
                tuple(sorted({o for _, o in members})))
        for (query_id, transaction_id), members in groups.items()
    ]
    return sorted(blockers, key=lambda b: -b.oldest_wait_ms), unknown


def judge_blocked(live: Sequence[LiveQuery], waits: Iterable[LockWait], policy: SnowflakeQueryWatchPolicy,
                  waits_known: bool = True) -> list[Finding]:
    """One finding per blocker whose oldest waiter waited past the threshold (who blocks whom), and
    one per blocked query whose blocker LOCK_WAIT_HISTORY does not show yet (or could not be read)."""
    warn, crit = policy.blocked_warn_minutes * 60_000, policy.blocked_critical_minutes * 60_000
    blockers, unknown = blockers_of(live, waits if waits_known else [])
    found = []
    for b in blockers:
        if b.oldest_wait_ms < warn:
            continue
        who = (f"{b.running.user}'s query {b.query_id} ({b.running.status.lower()} for "
               f"{_minutes(b.running.elapsed_ms)}: {_text(b.running)})" if b.running else
               f"transaction {b.transaction_id} (its statement {b.query_id or '?'} has finished; the "
               "transaction is still open)")
        waiting = ", ".join(f"{w.user}'s {w.query_id} ({_minutes(w.blocked_ms)})" for w in b.waiting)
        found.append(Finding(
            kind=KIND_BLOCKER, resource_id=b.query_id or f"transaction {b.transaction_id}", scope=b.account,
            severity=Severity.CRITICAL if b.oldest_wait_ms >= crit else Severity.WARNING,
            reason=f"{who} blocks {len(b.waiting)} quer{'y' if len(b.waiting) == 1 else 'ies'} on "
                   f"{', '.join(b.objects)}: {waiting}",
            numbers={"blocker_query_id": b.query_id, "blocker_transaction_id": b.transaction_id,
                     "blocker_user": b.running.user if b.running else None,
                     "blocked_query_ids": [w.query_id for w in b.waiting],
                     "blocked_users": sorted({w.user for w in b.waiting}), "objects": list(b.objects),
                     "oldest_wait_s": round(b.oldest_wait_ms / 1000)},
        ))
    for q in unknown:
        if q.blocked_ms < warn:
            continue
        why = ("LOCK_WAIT_HISTORY does not show its blocker yet (it lags)" if waits_known
               else "LOCK_WAIT_HISTORY could not be read")
        found.append(Finding(
            kind=KIND_BLOCKED, resource_id=q.query_id, scope=q.account,
            severity=Severity.CRITICAL if q.blocked_ms >= crit else Severity.WARNING,
            reason=f"{q.user}'s query on {q.warehouse} has waited for a lock for {_minutes(q.blocked_ms)}; {why}: {_text(q)}",
            numbers={"user": q.user, "warehouse": q.warehouse, "blocked_s": round(q.blocked_ms / 1000), "query": _text(q)},
        ))
    return found


def plan_cancels(live: Sequence[LiveQuery], waits: Iterable[LockWait], policy: SnowflakeQueryWatchPolicy,
                 own_tag: str) -> list[PlannedCancel]:
    """Queries over a hard limit, each to be offered for a person's approval; never our own."""
    plans: dict[str, PlannedCancel] = {}
    if policy.cancel_blockers_over_minutes is not None:
        limit = policy.cancel_blockers_over_minutes * 60_000
        for b in blockers_of(live, waits)[0]:
            if b.running and b.running.tag != own_tag and b.oldest_wait_ms >= limit:
                plans[b.query_id] = PlannedCancel(
                    b.account, b.query_id, b.running.user,
                    f"blocks {len(b.waiting)} quer{'y' if len(b.waiting) == 1 else 'ies'} for "
                    f"{_minutes(b.oldest_wait_ms)} (limit {_minutes(limit)})")
    if policy.cancel_queries_over_minutes is not None:
        limit = policy.cancel_queries_over_minutes * 60_000
        for q in live:
            if q.status in RUNNING and q.tag != own_tag and q.elapsed_ms >= limit and q.query_id not in plans:
                plans[q.query_id] = PlannedCancel(q.account, q.query_id, q.user,
                                                  f"running for {_minutes(q.elapsed_ms)} (limit {_minutes(limit)})")
    return list(plans.values())
