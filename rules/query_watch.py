"""Judging running queries and lock waits on Redshift and PostgreSQL; deciding what to cancel.

Pure: the collect tasks in `tasks/redshift.py` hand over plain records, the flow passes the
policy, and these functions return findings and planned actions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from rules.config import ActingPolicy
from rules.findings import Finding, Severity
from rules.text import mask_sql_literals

QUERY_TEXT_CHARS = 300
# Redshift's own housekeeping sessions; never ours to cancel.
SYSTEM_USERS = frozenset({"rdsdb"})


@dataclass(frozen=True)
class RunningQuery:
    """A query that is running (or queued) right now."""

    pid: int
    user: str
    database: str
    started: datetime
    duration_s: float
    text: str
    queue: str | None = None
    state: str = "running"


@dataclass(frozen=True)
class LockWait:
    """One session waiting for a lock that another session holds."""

    waiter_pid: int
    waiter_user: str
    blocker_pid: int
    blocker_user: str
    blocker_since: datetime | None  # the blocker's transaction (or query) start: part of its identity
    lock_mode: str
    relation: str
    waited_s: float
    blocker_text: str = ""


@dataclass(frozen=True)
class PlannedAction:
    """Cancel or terminate one backend: what, whose, and why."""

    action: Literal["cancel", "terminate"]
    pid: int
    user: str
    resource_id: str
    reason: str
    allow_listed: bool = False  # a standing approval: the policy's `act_on_users`


class QueryWatchPolicy(ActingPolicy):
    """Thresholds of the query watchdog, and when (if ever) it may cancel or terminate."""

    long_query_warn_minutes: float = Field(
        default=60, gt=0, description="A query running longer than this is reported (warning)."
    )
    long_query_critical_minutes: float = Field(
        default=240, gt=0, description="A query running longer than this is critical."
    )
    lock_wait_warn_minutes: float = Field(
        default=5, gt=0, description="A blocker whose oldest waiter waited this long is reported."
    )
    lock_wait_critical_minutes: float = Field(
        default=30, gt=0, description="A blocker whose oldest waiter waited this long is critical."
    )
    cancel_queries_over_minutes: float | None = Field(
        default=None, gt=0,
        description="Hard limit: cancel (or terminate) queries running longer. Empty: never.",
    )
    long_query_action: Literal["cancel", "terminate"] = Field(
        default="cancel",
        description="`cancel` stops the statement (pg_cancel_backend); `terminate` ends the session.",
    )
    terminate_blockers_over_minutes: float | None = Field(
        default=None, gt=0,
        description="Hard limit: end blockers whose oldest waiter waited longer. Empty: never.",
    )
    blocker_action: Literal["cancel", "terminate"] = Field(
        default="terminate",
        description="An idle blocker holds its locks until its session ends, hence `terminate`.",
    )
    act_on_users: list[str] = Field(
        default_factory=list,
        description=(
            "Allow-list: sessions of these database users may be acted on by scheduled runs. "
            "Anyone else's only when a person approves it when an apply run asks."
        ),
    )
    repeat_interval_hours: float = Field(
        default=4, gt=0, description="Remind about a finding still open after this many hours."
    )
    approval_timeout_seconds: int = Field(
        default=900, ge=10, le=86400,
        description="How long an apply run waits for a person to approve cancelling; no answer changes nothing.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> QueryWatchPolicy:
        if self.long_query_critical_minutes < self.long_query_warn_minutes:
            raise ValueError("long_query_critical_minutes must be >= long_query_warn_minutes")
        if self.lock_wait_critical_minutes < self.lock_wait_warn_minutes:
            raise ValueError("lock_wait_critical_minutes must be >= lock_wait_warn_minutes")
        return self

    @property
    def min_query_seconds(self) -> int:
        """Shortest duration worth fetching: the warn threshold or the hard limit, if lower."""
        limits = [self.long_query_warn_minutes, self.cancel_queries_over_minutes or float("inf")]
        return max(0, int(min(limits) * 60))


def _iso(ts: datetime | None) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ") if ts else "unknown"


def _minutes(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min"


def query_resource_id(q: RunningQuery) -> str:
    """Stable while the same query runs; a new query in the same session is a new finding."""
    return f"pid {q.pid} since {_iso(q.started)}"


def blocker_resource_id(pid: int, since: datetime | None) -> str:
    return f"pid {pid} since {_iso(since)}" if since else f"pid {pid}"


def judge_long_queries(
    queries: Iterable[RunningQuery], policy: QueryWatchPolicy, scope: str,
    waits: Iterable[LockWait] = (),
) -> list[Finding]:
    """Queries over the warn threshold: warning; over the critical one: critical. A query that
    waits on a lock says so and names its blocker: it is not slow, it is stuck."""
    warn_s, crit_s = policy.long_query_warn_minutes * 60, policy.long_query_critical_minutes * 60
    waiting = {w.waiter_pid: w for w in waits}
    found = []
    for q in sorted(queries, key=lambda q: -q.duration_s):
        if q.duration_s < warn_s:
            continue
        severity = Severity.CRITICAL if q.duration_s >= crit_s else Severity.WARNING
        text = mask_sql_literals(q.text, QUERY_TEXT_CHARS)
        queue = f" in queue {q.queue}" if q.queue else ""
        wait = waiting.get(q.pid)
        blocked = (f", blocked for {_minutes(wait.waited_s)} by {wait.blocker_user} (pid {wait.blocker_pid}) "
                   f"on {wait.relation}" if wait else "")
        found.append(Finding(
            kind="long-running-query",
            resource_id=query_resource_id(q),
            scope=scope,
            severity=severity,
            reason=(f"{q.user}@{q.database} has been {q.state} for {_minutes(q.duration_s)}{queue}"
                    f"{blocked} (limit {_minutes(warn_s)}): {text}"),
            numbers={"pid": q.pid, "user": q.user, "database": q.database,
                     "started": _iso(q.started), "duration_s": round(q.duration_s),
                     "queue": q.queue, "state": "blocked" if wait else q.state, "query": text,
                     **({"blocked_by_pid": wait.blocker_pid} if wait else {})},
        ))
    return found


@dataclass(frozen=True)
class Blocker:
    """A session holding a lock others wait for, with everyone waiting on it."""

    pid: int
    user: str
    since: datetime | None
    text: str
    waiters: tuple[LockWait, ...]

    @property
    def resource_id(self) -> str:
        return blocker_resource_id(self.pid, self.since)

    @property
    def oldest_wait_s(self) -> float:
        return max(w.waited_s for w in self.waiters)


def group_blockers(waits: Iterable[LockWait]) -> list[Blocker]:
    by_pid: dict[int, list[LockWait]] = defaultdict(list)
    for w in waits:
        if w.waiter_pid != w.blocker_pid:
            by_pid[w.blocker_pid].append(w)
    blockers = []
    for pid, ws in by_pid.items():
        first = ws[0]
        since = min((w.blocker_since for w in ws if w.blocker_since), default=None)
        blockers.append(Blocker(pid, first.blocker_user, since, first.blocker_text, tuple(ws)))
    return sorted(blockers, key=lambda b: -b.oldest_wait_s)


def judge_lock_waits(
    waits: Iterable[LockWait], policy: QueryWatchPolicy, scope: str
) -> list[Finding]:
    """One finding per blocking session whose oldest waiter waited past the threshold."""
    warn_s, crit_s = policy.lock_wait_warn_minutes * 60, policy.lock_wait_critical_minutes * 60
    found = []
    for b in group_blockers(waits):
        oldest = b.oldest_wait_s
        if oldest < warn_s:
            continue
        blocked = sorted({w.waiter_pid for w in b.waiters})
        modes = sorted({w.lock_mode for w in b.waiters})
        relations = sorted({w.relation for w in b.waiters})
        text = mask_sql_literals(b.text, QUERY_TEXT_CHARS) if b.text else ""
        found.append(Finding(
            kind="lock-blocker",
            resource_id=b.resource_id,
            scope=scope,
            severity=Severity.CRITICAL if oldest >= crit_s else Severity.WARNING,
            reason=(f"{b.user} (pid {b.pid}) blocks {len(blocked)} session(s) "
                    f"{', '.join(map(str, blocked))} on {', '.join(relations)} "
                    f"({', '.join(modes)} wanted); oldest waiting {_minutes(oldest)}"
                    + (f": {text}" if text else "")),
            numbers={"blocking_pid": b.pid, "blocker_user": b.user, "blocked_pids": blocked,
                     "lock_modes": modes, "relations": relations,
                     "oldest_wait_s": round(oldest), "blocker_since": _iso(b.since),
                     "blocker_query": text},
        ))
    return found


_ACCESS_KINDS = {"credentials": "warehouse-login-failed", "iam": "warehouse-login-failed",
                 "unreachable": "warehouse-unreachable", "views": "monitoring-views-denied"}


def access_findings(scope: str, problems: Iterable[tuple[str, str]]) -> list[Finding]:
    """The watch itself could not look: the warehouse is down, refused us, or hid its views.

    `problems` are (problem, message) pairs; one finding per kind of problem.
    """
    by_kind: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for problem, message in problems:
        by_kind[_ACCESS_KINDS.get(problem, "warehouse-check-failed")].append((problem, message))
    return [
        Finding(kind=kind, resource_id=scope, scope=scope, severity=Severity.CRITICAL,
                reason=" ".join(dict.fromkeys(m for _, m in items)),
                numbers={"problems": sorted({p for p, _ in items})})
        for kind, items in sorted(by_kind.items())
    ]


CHECK_KINDS = {"queries": {"long-running-query"}, "waits": {"lock-blocker"}}


def not_checked(failed_checks: Iterable[str], check_kinds: Mapping[str, set[str]] = CHECK_KINDS) -> set[str]:
    """Finding kinds this run could not judge: a failed connection (or visibility) blinds all."""
    failed = set(failed_checks)
    if failed - set(check_kinds):  # connection, visibility: nothing was seen
        return set().union(*check_kinds.values())
    return set().union(set(), *(check_kinds[c] for c in failed))


def _why(user: str, policy: QueryWatchPolicy) -> str:
    return f"user {user} is allow-listed" if user in policy.act_on_users else "needs a person's approval"


def plan_actions(
    queries: Sequence[RunningQuery],
    waits: Sequence[LockWait],
    policy: QueryWatchPolicy,
    own_pid: int | None,
) -> list[PlannedAction]:
    """Backends over a hard limit; never our own session nor the system's.

    Those of allow-listed users are approved by the policy; the others go through the approval
    path, by their finding id (`pid 123 since 2026-…Z`), so a reused pid is never acted on.
    """
    plans: dict[int, PlannedAction] = {}
    if policy.terminate_blockers_over_minutes is not None:
        limit_s = policy.terminate_blockers_over_minutes * 60
        for b in group_blockers(waits):
            if b.pid != own_pid and b.user not in SYSTEM_USERS and b.oldest_wait_s >= limit_s:
                plans[b.pid] = PlannedAction(
                    policy.blocker_action, b.pid, b.user, b.resource_id,
                    f"blocks {len(b.waiters)} session(s) for {_minutes(b.oldest_wait_s)} "
                    f"(hard limit {_minutes(limit_s)}); {_why(b.user, policy)}",
                    b.user in policy.act_on_users,
                )
    if policy.cancel_queries_over_minutes is not None:
        limit_s = policy.cancel_queries_over_minutes * 60
        for q in queries:
            if (q.pid != own_pid and q.pid not in plans and q.user not in SYSTEM_USERS
                    and q.duration_s >= limit_s):
                plans[q.pid] = PlannedAction(
                    policy.long_query_action, q.pid, q.user, query_resource_id(q),
                    f"running for {_minutes(q.duration_s)} (hard limit {_minutes(limit_s)}); "
                    f"{_why(q.user, policy)}",
                    q.user in policy.act_on_users,
                )
    return list(plans.values())
