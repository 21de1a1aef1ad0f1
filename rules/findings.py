"""The one finding model every job returns, and the lifecycle that decides what to announce."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class Finding(BaseModel):
    """Something a job judged worth a person's attention."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = Field(description="What was found, e.g. `unattached-volume`.")
    resource_id: str = Field(description="The resource it is about, e.g. `vol-0abc`.")
    scope: str = Field(
        default="",
        description="Where the resource lives: `account/region`, a BigQuery project, a database.",
    )
    severity: Severity = Field(default=Severity.WARNING, description="How urgent it is.")
    reason: str = Field(description="Why it was judged so, with the deciding numbers.")
    numbers: dict[str, Any] = Field(
        default_factory=dict, description="The measurements that decided it."
    )
    monthly_cost_usd: float | None = Field(
        default=None, description="What it costs (or would save) per month, in USD."
    )
    url: str | None = Field(default=None, description="A link to the resource, if any.")

    @property
    def key(self) -> str:
        """Stable identity across runs: the same resource with the same problem."""
        return f"{self.kind}|{self.scope}|{self.resource_id}"


@dataclass(frozen=True)
class KnownFinding:
    """What the store remembers of an open finding between runs."""

    key: str
    severity: Severity
    first_seen: datetime
    last_alerted: datetime | None
    kind: str = ""
    scope: str = ""
    resource_id: str = ""


@dataclass(frozen=True)
class Gap:
    """A part of a target this run could not read, and why.

    No `kinds` and no `resource_prefix`: nothing of the target was read. Otherwise only the
    findings of those kinds (and/or resources under that prefix) are hidden: the S3 listing of
    an account failed, one bucket was denied, the log scan of a region was refused.
    """

    scope: str
    error: str
    kinds: frozenset[str] = frozenset()
    resource_prefix: str = ""

    @property
    def whole(self) -> bool:
        return not self.kinds and not self.resource_prefix

    def hides(self, kind: str, resource_id: str) -> bool:
        return (not self.kinds or kind in self.kinds) and resource_id.startswith(self.resource_prefix)

    @property
    def label(self) -> str:
        parts = [self.scope, ", ".join(sorted(self.kinds)), self.resource_prefix]
        return " ".join(p for p in parts if p)


@dataclass
class Coverage:
    """Which targets a run read. Only what was read, and found healed, may be resolved."""

    read: set[str] = field(default_factory=set)
    gaps: list[Gap] = field(default_factory=list)

    def mark_read(self, scope: str) -> None:
        self.read.add(scope)

    def fail(self, scope: str, error: str, kinds: Iterable[str] = (), resource_prefix: str = "") -> None:
        self.gaps.append(Gap(scope, error, frozenset(kinds), resource_prefix))

    def merge(self, other: Coverage) -> None:
        self.read |= other.read
        self.gaps += other.gaps

    @property
    def covered(self) -> set[str]:
        """Targets read at least in part."""
        return self.read - {g.scope for g in self.gaps if g.whole}

    def covers(self, kind: str, scope: str, resource_id: str) -> bool:
        """Whether this run looked where such a finding lives."""
        if scope not in self.read:
            return False
        return not any(g.scope == scope and g.hides(kind, resource_id) for g in self.gaps)

    @property
    def nothing_read(self) -> bool:
        return not self.covered

    @property
    def errors(self) -> dict[str, str]:
        """What was not covered, for people: where -> why."""
        return {g.label: g.error for g in self.gaps}


@dataclass
class Transitions:
    """What changed since the job's last run; the digest announces these."""

    opened: list[Finding] = field(default_factory=list)
    escalated: list[Finding] = field(default_factory=list)
    reminded: list[Finding] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)  # keys of findings no longer present
    still_open: list[Finding] = field(default_factory=list)
    # "field: old -> new" when the job's policy changed since its last run: what no longer
    # shows may be healed or only under a raised threshold, and the digest says so.
    policy_changes: list[str] = field(default_factory=list)

    @property
    def to_announce(self) -> list[Finding]:
        return [*self.opened, *self.escalated, *self.reminded]

    @property
    def is_quiet(self) -> bool:
        return not (self.opened or self.escalated or self.reminded or self.resolved)


def policy_changes(before: Mapping[str, Any] | None, now: Mapping[str, Any]) -> list[str]:
    """The policy fields that differ from the last run's (none on a first run)."""
    if before is None:
        return []
    return [f"{name}: {before.get(name)!r} -> {now.get(name)!r}"
            for name in sorted(set(before) | set(now)) if before.get(name) != now.get(name)]


def diff_findings(
    known: Mapping[str, KnownFinding],
    current: Iterable[Finding],
    now: datetime,
    repeat_interval: timedelta,
    coverage: Coverage,
) -> Transitions:
    """Compare this run's findings with the open ones the store knows.

    A finding still open is announced again only once `repeat_interval` has passed since
    it was last announced; a finding that got more severe is announced at once; one that
    disappeared is resolved exactly once (the store forgets it afterwards), and only when
    `coverage` says this run read where it lives: an outage proves nothing healed.
    """
    result = Transitions()
    seen: set[str] = set()
    for finding in current:
        if finding.key in seen:
            continue
        seen.add(finding.key)
        before = known.get(finding.key)
        if before is None:
            result.opened.append(finding)
        elif finding.severity.rank > before.severity.rank:
            result.escalated.append(finding)
        elif before.last_alerted is None or now - before.last_alerted >= repeat_interval:
            result.reminded.append(finding)
        else:
            result.still_open.append(finding)
    result.resolved = sorted(
        key for key, k in known.items()
        if key not in seen and coverage.covers(k.kind, k.scope, k.resource_id)
    )
    return result
