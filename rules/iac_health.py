"""IaC health: the state backends (bucket settings, locking), stale locks and CloudFormation stacks.

Pure judgement over what `tasks/aws/iac.py` read. A Terraform S3 backend that locks in DynamoDB
writes, with every state it saves, an item `LockID = "<bucket>/<key>-md5"` holding the MD5 of the
state (`Digest`); a lock is an item `LockID = "<bucket>/<key>"` whose `Info` is the lock's JSON
(ID, Operation, Who, Version, Created, Path, Info). With `use_lockfile` the lock is an object
`<key>.tflock` holding the same JSON, and no digest is kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import BaseModel, Field, model_validator

from rules.config import OPT_OUT_TAG, ActingPolicy
from rules.findings import Finding, Severity
from rules.iac_state import StateBackend, StateObject
from rules.pricing import PriceTable, s3_monthly

UNVERSIONED = "state-bucket-unversioned"
UNENCRYPTED = "state-bucket-unencrypted"
PUBLIC = "state-bucket-public-access"
VERSIONS_KEPT = "state-versions-kept"
EMPTY_BACKEND = "state-backend-empty"
UNLOCKED = "state-unlocked"
LOCK_TABLE_MISSING = "lock-table-missing"
LOCK_BYPASSED = "state-lock-bypassed"
STALE_LOCK = "stale-state-lock"
STACK_FAILED = "stack-failed"
STACK_STALE = "stack-stale"

DIGEST_SUFFIX = "-md5"
LOCKFILE_SUFFIX = ".tflock"
REMOVE_LOCK = "remove-stale-lock"

# Stack statuses that need a person: the stack cannot be updated, or its last change failed.
FAILED_STATUSES = {
    "CREATE_FAILED": Severity.CRITICAL, "ROLLBACK_FAILED": Severity.CRITICAL,
    "DELETE_FAILED": Severity.CRITICAL, "UPDATE_ROLLBACK_FAILED": Severity.CRITICAL,
    "IMPORT_ROLLBACK_FAILED": Severity.CRITICAL,
    "ROLLBACK_COMPLETE": Severity.WARNING,  # a failed create: can only be deleted
    "UPDATE_ROLLBACK_COMPLETE": Severity.WARNING, "IMPORT_ROLLBACK_COMPLETE": Severity.WARNING,
    "UPDATE_FAILED": Severity.CRITICAL,
}


class StateSearch(BaseModel):
    """How states are found: the backends a run is given, plus discovery by key within a budget."""

    discover_states: bool = Field(
        default=True, description="Also look for states (`*.tfstate`, `.pulumi/stacks/**.json`) in every "
                                  "bucket of each account, within `discovery_max_pages`.")
    discovery_max_pages: int = Field(
        default=20, ge=0, le=10_000,
        description="Pages of 1,000 keys listed per account while discovering states; the busiest-looking "
                    "buckets (names with tfstate, terraform, state, pulumi) are listed first.")
    backend_max_pages: int = Field(
        default=50, ge=1, le=10_000, description="Pages of 1,000 keys listed per configured backend.")


class IacHealthPolicy(ActingPolicy, StateSearch):
    """When a state backend, a lock or a stack needs a person."""

    stale_lock_hours: float = Field(
        default=4, ge=0.25, description="A lock older than this many hours is stale (a crashed or abandoned run).")
    stale_lock_critical_hours: float = Field(
        default=24, ge=0.25, description="A lock older than this many hours is critical.")
    stack_stale_days: int = Field(
        default=180, ge=1, description="A CloudFormation stack not updated for this many days is stale.")
    version_scan_max_pages: int = Field(
        default=20, ge=1, le=10_000,
        description="Pages of 1,000 versions read per state bucket to size its noncurrent versions.")
    lock_table_hints: list[str] = Field(
        default_factory=lambda: ["lock", "tfstate", "terraform"],
        description="Tables whose name contains one of these are checked for Terraform locks (besides "
                    "the backends' `lock_table`s).")
    opt_out_tag: str = Field(default=OPT_OUT_TAG, description=(
        "A lock table or state bucket carrying this tag key is never changed (its stale locks are "
        "listed, not offered)."))

    @model_validator(mode="after")
    def _critical_after_warning(self) -> IacHealthPolicy:
        if self.stale_lock_critical_hours < self.stale_lock_hours:
            raise ValueError("`stale_lock_critical_hours` must be at least `stale_lock_hours`")
        return self


@dataclass(frozen=True)
class LockInfo:
    """A Terraform lock's Info JSON: who took it, when, for which operation."""

    lock_id: str = ""
    operation: str = ""
    who: str = ""
    version: str = ""
    created: datetime | None = None
    path: str = ""
    info: str = ""


def parse_lock_info(raw: str | bytes | None) -> LockInfo | None:
    """The lock's Info JSON; None when it is not one (nothing of it is quoted back)."""
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    created = None
    if isinstance(data.get("Created"), str):
        try:  # Go writes RFC 3339 with nanoseconds; Python takes microseconds
            text = data["Created"].replace("Z", "+00:00")
            head, dot, tail = text.partition(".")
            if dot:
                digits = "".join(c for c in tail if c.isdigit())
                text = f"{head}.{digits[:6]}{tail[len(digits):]}"
            created = datetime.fromisoformat(text)
            if created.tzinfo is None:
                created = created.replace(tzinfo=timezone.utc)
        except ValueError:
            created = None
    return LockInfo(str(data.get("ID", "")), str(data.get("Operation", "")), str(data.get("Who", "")),
                    str(data.get("Version", "")), created, str(data.get("Path", "")), str(data.get("Info", "")))


@dataclass(frozen=True)
class Lock:
    """A lock held on a state: a DynamoDB item or an S3 lock file."""

    state_path: str  # "<bucket>/<key>" of the state it locks
    region: str
    table: str = ""  # the DynamoDB table; "" for an S3 lock file
    lock_file: str = ""  # s3://bucket/key.tflock
    info: LockInfo | None = None
    written: datetime | None = None  # the lock file's LastModified (DynamoDB keeps no time)
    opted_out: bool = False

    @property
    def resource_id(self) -> str:
        return self.lock_file or f"dynamodb:{self.table}/{self.state_path}"

    @property
    def taken(self) -> datetime | None:
        return (self.info.created if self.info else None) or self.written


@dataclass(frozen=True)
class LockTable:
    """A DynamoDB table holding Terraform locks, as read this run."""

    name: str
    region: str
    exists: bool = True
    digests: Mapping[str, str] = field(default_factory=dict)  # "<bucket>/<key>" -> MD5 hex
    locks: tuple[Lock, ...] = ()
    truncated: bool = False


@dataclass(frozen=True)
class BucketSettings:
    """A state bucket's settings, with the account's public access block folded in."""

    name: str
    region: str
    versioning: str = ""  # Enabled | Suspended | "" (never enabled)
    encryption: str = ""  # the default SSE algorithm; "" = none
    public_access_block: tuple[bool, bool, bool, bool] | None = None  # effective flags; None = no block
    lifecycle_rules: tuple[Mapping[str, Any], ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    noncurrent_bytes: int | None = None
    noncurrent_versions: int = 0
    noncurrent_truncated: bool = False


@dataclass(frozen=True)
class Stack:
    """A CloudFormation stack, as ListStacks gives it."""

    name: str
    region: str
    status: str
    created: datetime
    updated: datetime | None = None
    reason: str = ""

    @property
    def last_change(self) -> datetime:
        return self.updated or self.created


def _age(now: datetime, then: datetime) -> str:
    hours = (now - then).total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.0f} days"


def _covers_noncurrent_expiry(rule: Mapping[str, Any], prefix: str) -> bool:
    """An enabled lifecycle rule expiring noncurrent versions under `prefix`."""
    if rule.get("Status") != "Enabled" or not rule.get("NoncurrentVersionExpiration"):
        return False
    flt = rule.get("Filter") or {}
    rule_prefix = rule.get("Prefix", flt.get("Prefix", (flt.get("And") or {}).get("Prefix", "")))
    if flt.get("Tag") or (flt.get("And") or {}).get("Tags"):
        return False  # states carry no tags Terraform would set
    return prefix.startswith(rule_prefix or "")


def judge_buckets(buckets: Iterable[BucketSettings], states: Sequence[StateObject], prices: PriceTable,
                  ) -> list[Finding]:
    """Versioning, default encryption, public access and kept noncurrent versions of each bucket
    holding states."""
    by_bucket: dict[str, list[StateObject]] = {}
    for s in states:
        by_bucket.setdefault(s.bucket, []).append(s)
    findings = []
    for b in buckets:
        held = by_bucket.get(b.name, [])
        if not held:
            continue
        what = f"{len(held)} state{'s' if len(held) != 1 else ''}"
        if b.versioning != "Enabled":
            findings.append(Finding(
                kind=UNVERSIONED, resource_id=f"s3://{b.name}/", severity=Severity.WARNING,
                reason=f"holds {what} with versioning {b.versioning.lower() or 'off'}: a bad apply or a "
                       "deleted key loses the state for good; enable versioning",
                numbers={"states": len(held), "versioning": b.versioning or "off"}))
        if not b.encryption:
            findings.append(Finding(
                kind=UNENCRYPTED, resource_id=f"s3://{b.name}/", severity=Severity.WARNING,
                reason=f"holds {what} (which keep secrets in plain text) with no default encryption",
                numbers={"states": len(held)}))
        if b.public_access_block is None or not all(b.public_access_block):
            off = "no public access block" if b.public_access_block is None else "public access block " + \
                ", ".join(n for n, on in zip(("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls",
                                             "RestrictPublicBuckets"), b.public_access_block, strict=True)
                          if not on) + " off"
            findings.append(Finding(
                kind=PUBLIC, resource_id=f"s3://{b.name}/", severity=Severity.CRITICAL,
                reason=f"holds {what} and public access is not fully blocked ({off}, bucket and account "
                       "settings combined)", numbers={"states": len(held)}))
        if b.versioning in ("Enabled", "Suspended") and b.noncurrent_bytes:
            prefixes = {s.key.rsplit("/", 1)[0] + "/" if "/" in s.key else "" for s in held}
            if not all(any(_covers_noncurrent_expiry(r, p) for r in b.lifecycle_rules) for p in prefixes):
                cost = s3_monthly(prices, b.region, "STANDARD", b.noncurrent_bytes)
                at_least = "at least " if b.noncurrent_truncated else ""
                findings.append(Finding(
                    kind=VERSIONS_KEPT, resource_id=f"s3://{b.name}/", severity=Severity.INFO,
                    reason=f"{at_least}{b.noncurrent_versions:,} noncurrent versions "
                           f"({b.noncurrent_bytes / 1024**3:.2f} GiB) kept forever: no lifecycle rule expires "
                           "noncurrent versions of its states (keep e.g. 90 days)",
                    numbers={"noncurrent_bytes": b.noncurrent_bytes, "noncurrent_versions": b.noncurrent_versions,
                             "estimated_price": cost.estimated, "lower_bound": b.noncurrent_truncated},
                    monthly_cost_usd=cost.usd))
    return findings


def judge_empty_backends(empty: Iterable[str]) -> list[Finding]:
    """A configured backend where no state was found: a wrong bucket or key, or deleted states."""
    return [Finding(kind=EMPTY_BACKEND, resource_id=label, severity=Severity.WARNING,
                    reason="no state found there: a wrong bucket, key or prefix, or the states were deleted")
            for label in sorted(empty)]


def backend_of(state: StateObject, backends: Sequence[StateBackend]) -> StateBackend | None:
    return next((b for b in backends if b.label == state.backend), None)


def judge_locking(states: Sequence[StateObject], backends: Sequence[StateBackend], tables: Sequence[LockTable],
                  state_md5: Mapping[str, str]) -> list[Finding]:
    """Terraform states written without locking, or last written around their lock table.

    `tables` are the lock tables of the states' region; `state_md5` maps a state's URI to the
    MD5 of its current content (read only for states whose table holds a digest).
    """
    findings = []
    by_name = {t.name: t for t in tables}
    for t in tables:
        if not t.exists:
            users = sorted(b.label for b in backends if b.lock_table == t.name)
            findings.append(Finding(
                kind=LOCK_TABLE_MISSING, resource_id=t.name, severity=Severity.CRITICAL,
                reason=f"the lock table of {', '.join(users)} does not exist in {t.region}: "
                       "every `terraform` run against it fails to lock", numbers={"backends": len(users)}))
    for s in states:
        if s.kind != "terraform":
            continue
        path = f"{s.bucket}/{s.key}"
        backend = backend_of(s, backends)
        if backend and backend.lock_table and not by_name.get(backend.lock_table, LockTable("", "")).exists:
            continue  # reported above, once for the table
        candidates = [by_name[backend.lock_table]] if backend and backend.lock_table and backend.lock_table in by_name \
            else [t for t in tables if t.exists]
        digest_in = next(((t, t.digests[path]) for t in candidates if path in t.digests), None)
        if digest_in is None:
            if backend and backend.use_lockfile and not backend.lock_table:
                continue  # S3 lock files keep no digest
            if backend and backend.lock_table:
                findings.append(Finding(
                    kind=LOCK_BYPASSED, resource_id=s.uri, severity=Severity.WARNING,
                    reason=f"no digest of it in lock table {backend.lock_table}: it was never written through "
                           "the lock table (runs without `dynamodb_table` or `use_lockfile` do not lock)",
                    numbers={"table": backend.lock_table}))
            else:
                configured = backend is not None
                findings.append(Finding(
                    kind=UNLOCKED, resource_id=s.uri,
                    severity=Severity.WARNING if configured else Severity.INFO,
                    reason=("its backend declares no `lock_table` and no `use_lockfile`: two runs at once can "
                            "corrupt it" if configured else
                            f"no lock digest in any lock table in {s.region or 'its region'}: it is written "
                            "without locking, or with S3 lock files (declare its backend with `use_lockfile` "
                            "to say so)"),
                    numbers={"configured": configured}))
            continue
        table, digest = digest_in
        actual = state_md5.get(s.uri)
        if actual and actual != digest.lower():
            findings.append(Finding(
                kind=LOCK_BYPASSED, resource_id=s.uri, severity=Severity.WARNING,
                reason=f"its last write did not go through lock table {table.name} (the digest there is of an "
                       f"older version, last modified {s.last_modified:%Y-%m-%d %H:%M} UTC): someone ran without "
                       "the lock table; Terraform refuses the state with a checksum error until the digest is fixed",
                numbers={"table": table.name}))
    return findings


def judge_locks(locks: Iterable[Lock], policy: IacHealthPolicy, now: datetime) -> list[Finding]:
    """Locks held longer than `stale_lock_hours`: who took them, when, for what."""
    findings = []
    for lock in locks:
        taken = lock.taken
        if taken is None or now - taken < timedelta(hours=policy.stale_lock_hours):
            continue
        info = lock.info or LockInfo()
        critical = now - taken >= timedelta(hours=policy.stale_lock_critical_hours)
        who = info.who or "someone"
        operation = info.operation or "an operation"
        findings.append(Finding(
            kind=STALE_LOCK, resource_id=lock.resource_id,
            severity=Severity.CRITICAL if critical else Severity.WARNING,
            reason=f"{who} has held the lock on s3://{lock.state_path} for {_age(now, taken)} "
                   f"({operation}{', Terraform ' + info.version if info.version else ''}, since "
                   f"{taken:%Y-%m-%d %H:%M} UTC): a crashed or abandoned run blocks every apply"
                   + (" (opted out: not offered for removal)" if lock.opted_out else ""),
            numbers={"hours": round((now - taken).total_seconds() / 3600, 1), "who": info.who,
                     "operation": info.operation, "lock_id": info.lock_id, "created": taken.isoformat()}))
    return findings


def lock_offers(locks: Iterable[Lock], findings: Iterable[Finding]) -> list[tuple[Lock, Finding]]:
    """The stale locks a person may remove, with their findings."""
    stale = {f.resource_id: f for f in findings if f.kind == STALE_LOCK}
    return [(lock, stale[lock.resource_id]) for lock in locks if lock.resource_id in stale]


def judge_stacks(stacks: Iterable[Stack], policy: IacHealthPolicy, now: datetime) -> list[Finding]:
    """Stacks stuck in a failed or rolled-back state, and stacks nobody updated for months."""
    findings = []
    for s in stacks:
        if s.status in FAILED_STATUSES:
            findings.append(Finding(
                kind=STACK_FAILED, resource_id=s.name, severity=FAILED_STATUSES[s.status],
                reason=f"{s.status} since {s.last_change:%Y-%m-%d %H:%M} UTC"
                       + (f" ({s.reason[:200]})" if s.reason else "")
                       + ("" if not s.status.endswith("_FAILED") else ": deploys of it fail until someone "
                          "continues the rollback or deletes it"),
                numbers={"status": s.status}))
        elif now - s.last_change >= timedelta(days=policy.stack_stale_days) and not s.status.endswith("IN_PROGRESS"):
            findings.append(Finding(
                kind=STACK_STALE, resource_id=s.name, severity=Severity.INFO,
                reason=f"not updated for {(now - s.last_change).days} days (last change "
                       f"{s.last_change:%Y-%m-%d}): still needed, or an abandoned service?",
                numbers={"days": (now - s.last_change).days, "status": s.status}))
    return findings
