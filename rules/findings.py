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


@dataclass
class Transitions:
    """What changed since the job's last run; the digest announces these."""

    opened: list[Finding] = field(default_factory=list)
    escalated: list[Finding] = field(default_factory=list)
    reminded: list[Finding] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)  # keys of findings no longer present
    still_open: list[Finding] = field(default_factory=list)

    @property
    def to_announce(self) -> list[Finding]:
        return [*self.opened, *self.escalated, *self.reminded]

    @property
    def is_quiet(self) -> bool:
        return not (self.opened or self.escalated or self.reminded or self.resolved)


def scope_failed(key: str, failed_scopes: Iterable[str]) -> bool:
    """Whether a finding (by key) lives in a scope this run could not look at.

    A failed scope may be the finding's own scope, a region (`eu-west-1` for
    `123456789012/eu-west-1`), an account, or a role ARN naming the account. A scope followed
    by a space and a resource-id prefix covers only those resources: `123456789012 s3://`
    (the account's buckets could not be listed), `123456789012 s3://logs/` (one bucket).
    """
    _, scope, resource = key.split("|", 2) if key.count("|") >= 2 else ("", "", key)
    parts = set(scope.split("/"))
    for failed in failed_scopes:
        failed, _, prefix = failed.partition(" ")
        if prefix and not resource.startswith(prefix):
            continue
        account = failed.split(":")[4] if failed.startswith("arn:") and failed.count(":") >= 5 else None
        if failed == scope or failed in parts or (account and account in parts):
            return True
    return False


def diff_findings(
    known: Mapping[str, KnownFinding],
    current: Iterable[Finding],
    now: datetime,
    repeat_interval: timedelta,
    failed_scopes: Iterable[str] = (),
) -> Transitions:
    """Compare this run's findings with the open ones the store knows.

    A finding still open is announced again only once `repeat_interval` has passed since
    it was last announced; a finding that got more severe is announced at once; one that
    disappeared is resolved exactly once (the store forgets it afterwards) — unless its scope
    is in `failed_scopes`: an outage proves nothing healed, so it stays open, unannounced.
    """
    failed_scopes = tuple(failed_scopes)
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
        key for key in known if key not in seen and not scope_failed(key, failed_scopes)
    )
    return result
