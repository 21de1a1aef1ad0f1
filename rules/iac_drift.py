"""Drift: what the account holds against what states and stacks manage.

Pure judgement. `ManagedIndex` holds the managed set of every state and stack a run read
(`rules/iac_state.py`), keyed by identity: (kind, account, region, id), with no region for IAM
roles and neither account nor region for S3 buckets (their names are global). A live resource
no state or stack manages is *unmanaged* (priced where a list price exists); a managed one that
is gone is *missing*; one present with a compared attribute changed is *drifted*. The managed
share per kind is driftctl's coverage figure. Work is linear: one pass over each side.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from rules.config import OPT_OUT_TAG, JobPolicy, opted_out
from rules.findings import Finding, Severity
from rules.iac_health import StateSearch
from rules.iac_state import GLOBAL_KINDS, KINDS, PAB_FLAGS, Managed
from rules.pricing import HOURS_PER_MONTH, PriceTable, ebs_volume_monthly

UNMANAGED = "unmanaged-resource"
MISSING = "missing-resource"
DRIFTED = "drifted-resource"
UNREADABLE = "unreadable-state"
EMPTY_BACKEND = "state-backend-empty"
DRIFT_KINDS = frozenset({UNMANAGED, MISSING, DRIFTED})

# Tags AWS puts on instances a service launched: such an instance is managed by that service.
LAUNCHED_BY = ("aws:autoscaling:groupName", "aws:elasticmapreduce:job-flow-id", "aws:ec2spot:fleet-request-id",
               "aws:ec2:fleet-id", "aws:eks:cluster-name")
CLOUDFORMATION_TAG = "aws:cloudformation:stack-name"  # CloudFormation tags what it creates


class DriftPolicy(JobPolicy, StateSearch):
    """What drift compares and what it leaves out."""

    kinds: list[str] = Field(default_factory=lambda: list(KINDS), description=(
        "Resource kinds compared (Terraform type names): " + ", ".join(KINDS) + "."))
    ignore: list[str] = Field(default_factory=list, description=(
        "Resources never reported, as `<kind>/<id>` patterns with `*` wildcards "
        "(like driftctl's .driftignore): `aws_iam_role/OrganizationAccountAccessRole`, `aws_s3_bucket/cdk-*`."))
    opt_out_tag: str = Field(default=OPT_OUT_TAG, description="A resource carrying this tag key is never reported.")
    state_read_seconds: int = Field(
        default=600, ge=30, le=3600,
        description="The most reading and parsing every state of one account may take (states can be large).")
    region_read_seconds: int = Field(
        default=300, ge=30, le=3600,
        description="The most listing one region's resources of every compared kind may take.")

    @field_validator("kinds")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(KINDS))
        if unknown:
            raise ValueError(f"`kinds`: {', '.join(unknown)} not compared; choose from {', '.join(KINDS)}")
        return value

    @field_validator("ignore")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        bad = [p for p in value if "/" not in p or ("*" not in p.split("/", 1)[0] and p.split("/", 1)[0] not in KINDS)]
        if bad:
            raise ValueError(f"`ignore`: {bad[0]!r} is not `<kind>/<id>` (like `aws_iam_role/admin-*`); "
                             f"kinds: {', '.join(KINDS)}")
        return value


@dataclass(frozen=True)
class Live:
    """A resource the account holds, with the attributes compared and what it costs."""

    kind: str
    native_id: str
    region: str  # "" for IAM roles
    attrs: tuple[tuple[str, Any], ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    cost: tuple[Any, ...] = ()  # what it is billed by: ("ec2", type) / ("ebs", type, GiB, iops, MB/s) / ("rds", class)
    excluded: str = ""  # why it is not anybody's IaC to manage (a default group, a service's role)
    attached_to: str = ""  # a volume's instance: judged together with it
    detail: str = ""  # what it is, for people: `t3.large running`, `gp3 100 GiB`

    @property
    def resource_id(self) -> str:
        return f"{self.kind}/{self.native_id}"


def identity(kind: str, account: str, region: str, native_id: str) -> tuple[str, str, str, str]:
    if kind == "aws_s3_bucket":
        return kind, "", "", native_id
    if kind in GLOBAL_KINDS:
        return kind, account, "", native_id
    return kind, account, region, native_id


def _known_place(record: Managed) -> bool:
    if record.kind == "aws_s3_bucket":
        return True
    if record.kind in GLOBAL_KINDS:
        return bool(record.account)
    return bool(record.account and record.region)


class ManagedIndex:
    """The managed set of a run, by identity (a plain class: Prefect passes it to tasks as is).

    A record whose state does not say where it lives (no ARN, no region) is indexed by kind and
    id alone: it still counts as managed, but is never judged missing.
    """

    def __init__(self, records: Iterable[Managed] = ()) -> None:
        self._owners: dict[tuple[str, str, str, str], list[Managed]] = defaultdict(list)
        self._anywhere: dict[tuple[str, str], list[Managed]] = defaultdict(list)
        self._expected: dict[tuple[str, str, str, str] | tuple[str, str], dict[str, Any]] = {}
        # (account, region) -> the primary record of each identity that lives there ("" region:
        # IAM roles, and buckets whose region the state does not say: judged in the home region).
        self._places: dict[tuple[str, str], dict[tuple[str, str, str, str], Managed]] = defaultdict(dict)
        self.sources: set[str] = set()
        self.records = 0
        for r in records:
            self.add(r)

    def add(self, r: Managed) -> None:
        self.records += 1
        self.sources.add(r.source)
        key: Any = identity(r.kind, r.account, r.region, r.native_id) if _known_place(r) else (r.kind, r.native_id)
        (self._owners[key] if len(key) == 4 else self._anywhere[key]).append(r)
        if len(key) == 4 and r.account and not r.companion and not r.deposed:
            region = "" if r.kind in GLOBAL_KINDS and r.kind != "aws_s3_bucket" else r.region
            self._places[(r.account, region)].setdefault(key, r)
        expected = self._expected.setdefault(key, {})
        for name, value in r.attrs:
            if name == "ingress" and name in expected:
                expected[name] = tuple(sorted(set(expected[name]) | set(value)))
            else:
                expected[name] = value

    def owners(self, kind: str, account: str, region: str, native_id: str) -> list[Managed]:
        return self._owners.get(identity(kind, account, region, native_id), []) + \
            self._anywhere.get((kind, native_id), [])

    def manages(self, kind: str, account: str, region: str, native_id: str) -> bool:
        return bool(self.owners(kind, account, region, native_id))

    def expected(self, kind: str, account: str, region: str, native_id: str) -> dict[str, Any]:
        merged = dict(self._expected.get((kind, native_id), {}))
        for name, value in self._expected.get(identity(kind, account, region, native_id), {}).items():
            merged[name] = tuple(sorted(set(merged.get(name, ())) | set(value))) if name == "ingress" else value
        return merged

    def placed(self, account: str, region: str, home: bool) -> Iterator[tuple[tuple[str, str, str, str], Managed]]:
        """The records (not companions, not deposed) that live in this account and region: a
        regional kind in `region`, a bucket in `region` (or, its region unknown, the home region),
        an IAM role in the home region."""
        yield from self._places.get((account, region), {}).items()
        if home:
            yield from self._places.get((account, ""), {}).items()

    @property
    def unplaced(self) -> int:
        return sum(len(v) for v in self._anywhere.values())


def service_owned(live: Live) -> str:
    """Why a resource is nobody's IaC to manage, or "" when it is."""
    return live.excluded or next((f"launched by {k.split(':')[1]}" for k in LAUNCHED_BY if k in live.tags), "")


def ignored(live: Live, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(live.resource_id, p) for p in patterns)


@dataclass
class Coverage:
    """Managed share per kind in one target: driftctl's coverage figure."""

    total: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    managed: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def share(self, kind: str) -> float | None:
        return self.managed[kind] / self.total[kind] if self.total[kind] else None


def _fmt(value: Any) -> str:
    if isinstance(value, tuple) and len(value) == len(PAB_FLAGS) and all(isinstance(v, bool) for v in value):
        return ", ".join(f"{n}={'on' if v else 'off'}" for n, v in zip(PAB_FLAGS, value, strict=True))
    if isinstance(value, tuple):
        return "; ".join(value) or "(none)"
    return str(value)


def _same(name: str, want: Any, got: Any) -> bool:
    if name in ("memory_size", "timeout", "size"):
        try:
            return int(want) == int(got)
        except (TypeError, ValueError):
            return str(want) == str(got)
    if isinstance(want, tuple) or isinstance(got, tuple):
        return tuple(sorted(want or ())) == tuple(sorted(got or ()))
    return str(want) == str(got)


def price_of(live: Live, prices: PriceTable) -> tuple[float | None, bool]:
    """List price per month (and whether a us-east-1 price stood in), None where none applies:
    usage-billed kinds (Lambda, SQS, on-demand DynamoDB) and stopped instances."""
    basis, region = live.cost, live.region
    if not basis:
        return None, False
    if basis[0] == "ebs":
        _, vtype, size, iops, throughput = basis
        if not prices.has(region, f"ebs:{vtype}:gb"):
            return None, False
        p = ebs_volume_monthly(prices, region, vtype, size, iops, throughput)
        return round(p.usd, 2), p.estimated
    key = f"{basis[0]}:{basis[1]}:hour"
    if not prices.has(region, key):
        return None, False
    p = prices.get(region, key)
    return round(p.usd * HOURS_PER_MONTH, 2), p.estimated


def judge_drift(live: Sequence[Live], listed: set[str], index: ManagedIndex, account: str, region: str, home: bool,
                policy: DriftPolicy, prices: PriceTable, unmanaged_blocked: str = "") -> tuple[list[Finding], Coverage]:
    """Unmanaged, missing and drifted resources of one account and region, and the managed share.

    `live` holds the kinds this target reads (regional kinds, the region's buckets, and in the
    home region the IAM roles); `listed` the kinds whose listing succeeded. `unmanaged_blocked`
    says why unmanaged resources cannot be judged (a state that could not be read may manage them).
    """
    kinds = set(policy.kinds)
    findings: list[Finding] = []
    coverage = Coverage()
    by_id = {(r.kind, r.native_id): r for r in live}
    owned_instances = set()
    for r in live:
        if r.kind == "aws_instance" and (service_owned(r) or index.manages(r.kind, account, region, r.native_id)):
            owned_instances.add(r.native_id)
    riders: dict[str, list[Live]] = defaultdict(list)
    candidates: list[Live] = []
    for r in live:
        if r.kind not in kinds or r.kind not in listed or service_owned(r) or ignored(r, policy.ignore):
            continue
        coverage.total[r.kind] += 1
        managed = (index.manages(r.kind, account, r.region, r.native_id) or CLOUDFORMATION_TAG in r.tags
                   or (r.attached_to and r.attached_to in owned_instances))
        if managed:
            coverage.managed[r.kind] += 1
        elif r.attached_to and ("aws_instance", r.attached_to) in by_id:
            riders[r.attached_to].append(r)  # reported with its (unmanaged) instance
        elif not opted_out(dict(r.tags), policy.opt_out_tag):
            candidates.append(r)
    if not unmanaged_blocked:
        for r in candidates:
            extra = riders.get(r.native_id, [])
            priced_parts = [price_of(x, prices) for x in (r, *extra)]
            cost = sum(usd or 0 for usd, _ in priced_parts)
            priced = any(usd is not None for usd, _ in priced_parts)
            with_volumes = f" with {len(extra)} attached volume{'s' if len(extra) > 1 else ''} " \
                           f"({sum(int(dict(v.attrs).get('size', 0)) for v in extra)} GiB)" if extra else ""
            findings.append(Finding(
                kind=UNMANAGED, resource_id=r.resource_id, severity=Severity.WARNING,
                reason=f"created outside IaC: no state or stack manages this {r.kind}"
                       f"{' (' + r.detail + ')' if r.detail else ''}{with_volumes}",
                numbers={"kind": r.kind, "volumes": [v.native_id for v in extra],
                         "estimated_price": any(est for _, est in priced_parts)},
                monthly_cost_usd=round(cost, 2) if priced else None))
    for (kind, _, _, native_id), record in index.placed(account, region, home):
        if kind not in kinds or kind not in listed:
            continue
        got = by_id.get((kind, native_id))
        if got is None:
            findings.append(Finding(
                kind=MISSING, resource_id=f"{kind}/{native_id}", severity=Severity.WARNING,
                reason=f"in {record.tool} at {record.where} but gone from the account: deleted outside IaC "
                       "(the next apply recreates it) or a stale state",
                numbers={"source": record.source, "address": record.address, "tool": record.tool}))
            continue
        want = index.expected(kind, account, region, native_id)
        have = dict(got.attrs)
        changed = [(n, want[n], have[n]) for n in sorted(want) if n in have and not _same(n, want[n], have[n])]
        if changed:
            findings.append(Finding(
                kind=DRIFTED, resource_id=f"{kind}/{native_id}", severity=Severity.WARNING,
                reason=f"changed outside {record.tool} ({record.where}): " + "; ".join(
                    f"{n}: state {_fmt(w)}, live {_fmt(h)}" for n, w, h in changed),
                numbers={"source": record.source, "address": record.address, "tool": record.tool,
                         "attributes": {n: {"state": _fmt(w), "live": _fmt(h)} for n, w, h in changed}}))
    return findings, coverage


def coverage_rows(coverage: Coverage, scope: str, account: str, region: str, now: datetime) -> list[dict[str, Any]]:
    """Metric points: resources and managed resources per kind, and the managed share."""
    rows = []
    for kind in sorted(coverage.total):
        labels = {"account": account, "region": region, "kind": kind}
        subject = f"{scope}/{kind}"
        rows += [{"name": "iac.resources", "subject": subject, "ts": now, "value": coverage.total[kind], "labels": labels},
                 {"name": "iac.managed", "subject": subject, "ts": now, "value": coverage.managed[kind], "labels": labels},
                 {"name": "iac.managed_share", "subject": subject, "ts": now, "value": coverage.share(kind),
                  "labels": labels}]
    return rows


def coverage_table(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per account and kind (regions summed): total, managed, share: the artifact's coverage table."""
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        key = (r["labels"]["account"], r["labels"]["kind"])
        if r["name"] == "iac.resources":
            totals[key][0] += int(r["value"])
        elif r["name"] == "iac.managed":
            totals[key][1] += int(r["value"])
    return [{"account": a, "kind": k, "resources": t, "managed": m,
             "managed_share": f"{m / t:.0%}" if t else "n/a"} for (a, k), (t, m) in sorted(totals.items())]


def unreadable_findings(errors: Mapping[str, str]) -> list[Finding]:
    """A state that could not be read: named, with why (never its contents)."""
    return [Finding(kind=UNREADABLE, resource_id=uri, severity=Severity.WARNING,
                    reason=f"could not be read: {why}; unmanaged resources are not judged in this account "
                           "until it is, as it may manage them", numbers={})
            for uri, why in sorted(errors.items())]


def empty_backend_findings(empty: Iterable[str]) -> list[Finding]:
    return [Finding(kind=EMPTY_BACKEND, resource_id=label, severity=Severity.WARNING,
                    reason="no state found there: a wrong bucket, key or prefix, or the states were deleted")
            for label in sorted(empty)]
