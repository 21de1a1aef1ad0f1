"""Waste checks as data: each check is a `Rule` (a predicate over one listed resource, and its
price per month); `judge_rule` applies any rule to what its lister read.

A lister (`tasks/aws/waste/`) turns an AWS listing into `Resource`s: an id, a region, tags, a
creation time and plain `facts` (the numbers a predicate reads). The predicate returns the reason
a resource is waste, or None. The opt-out tag, the minimum $/month and the finding itself are
the same for every rule, here, once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import Field, field_validator

from rules.config import OPT_OUT_TAG, ActingPolicy, PricedPolicy, opted_out
from rules.findings import Finding, Severity
from rules.idle import rule_prefix
from rules.pricing import (
    HOURS_PER_MONTH,
    Price,
    PriceTable,
    ebs_volume_monthly,
    hourly_monthly,
    public_ipv4_monthly,
    s3_monthly,
    snapshot_monthly,
)

GIB = 1024**3
# The values CloudWatch Logs accepts for a retention (PutRetentionPolicy).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                      2557, 2922, 3288, 3653)


@dataclass(frozen=True)
class Resource:
    """One listed resource, as every check's lister returns it."""

    id: str  # what a finding names; a check that acts uses one unique across accounts (an ARN)
    region: str
    tags: Mapping[str, str] = field(default_factory=dict)
    created: datetime | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)  # JSON-able: they land in the finding
    arn: str = ""


@dataclass(frozen=True)
class Rule:
    """The pure part of a waste check: when a resource is waste, and what it costs per month."""

    kind: str
    title: str  # one line for the docs and the plan
    waste: Callable[[Resource, WastePolicy, datetime], str | None]  # the reason, or None
    # What it costs (or what the change saves) per month; None: not priced, or no price known.
    monthly: Callable[[Resource, PriceTable, WastePolicy], Price | None] | None = None
    action: str | None = None  # the change a person may approve, if any
    severity: Severity = Severity.WARNING
    below_floor: bool = False  # reported even under `min_monthly_usd` (a stale secret is a risk at any price)


class WastePolicy(ActingPolicy, PricedPolicy):
    """Thresholds of the waste checks (rendered as a form in the Prefect UI)."""

    checks: list[str] | None = Field(
        default=None, description="Check kinds to run (see the job's page); unset runs every check.")
    opt_out_tag: str = Field(
        default=OPT_OUT_TAG, min_length=1,
        description="Resources carrying this tag key are never reported or touched.")
    min_monthly_usd: float = Field(
        default=1.0, ge=0, description="Priced findings below this many USD per month are not reported.")
    min_age_days: int = Field(
        default=7, ge=0, description="Resources created less than this many days ago are left alone.")
    nat_idle_days: int = Field(
        default=7, ge=1, le=455, description="A NAT gateway is idle when it moved no traffic for this many days.")
    nat_max_bytes: int = Field(
        default=0, ge=0, description="Bytes a NAT gateway may move in `nat_idle_days` and still count as idle.")
    log_retention_days: int = Field(
        default=30, description="The retention offered for log groups that keep logs forever "
                                "(a value CloudWatch Logs accepts: 1, 3, 5, 7, 14, 30, 60, 90, ...).")
    multipart_min_age_days: int = Field(
        default=7, ge=1, description="Incomplete multipart uploads older than this many days are waste; "
                                     "the rule offered aborts them after this many days.")
    noncurrent_days: int = Field(
        default=30, ge=1, description="The offered lifecycle rule expires noncurrent versions this many "
                                      "days after they stop being current.")
    rds_snapshot_max_age_days: int = Field(
        default=90, ge=1, description="Manual RDS snapshots older than this many days are reported "
                                      "(those whose database is gone, from `min_age_days`).")
    snapshot_max_age_days: int = Field(
        default=90, ge=1, description="EBS snapshots of existing volumes older than this many days are reported "
                                      "(orphaned ones are idle-resources' finding).")
    ami_unused_days: int = Field(
        default=90, ge=1, description="Own AMIs older than this, used by no instance and not launched for this "
                                      "many days, are reported with their snapshots.")
    stopped_days: int = Field(
        default=30, ge=1, description="Instances stopped for more than this many days are reported (their "
                                      "volumes and addresses still bill).")
    ecr_untagged_days: int = Field(
        default=14, ge=1, description="Untagged ECR images pushed more than this many days ago are waste.")
    dynamodb_lookback_days: int = Field(
        default=14, ge=1, le=63, description="Days of consumed capacity a provisioned DynamoDB table is judged on.")
    dynamodb_max_utilization: float = Field(
        default=0.3, gt=0, le=1, description="A provisioned table using less than this share of its capacity is "
                                             "offered on-demand, when on-demand would cost less.")
    secret_unused_days: int = Field(
        default=90, ge=1, description="Secrets not read for this many days (or never, and this old) are reported.")
    emr_idle_minutes: int = Field(
        default=30, ge=10, le=1440, description="An EMR cluster reporting IsIdle for this many minutes is idle.")
    kinesis_lookback_days: int = Field(
        default=7, ge=1, le=15, description="Days of incoming traffic a provisioned stream's shard count is judged on.")
    notebook_max_hours: int = Field(
        default=24, ge=1, description="SageMaker notebook instances in service this many hours since their last "
                                      "start or change are reported (and offered a stop).")
    reservation_expiry_days: int = Field(
        default=30, ge=1, le=365, description="Redshift reserved nodes, RDS reserved instances and Savings Plans "
                                              "ending within this many days are reported (renew, or plan for "
                                              "on-demand prices).")
    s3_max_pages: int = Field(
        default=200, ge=1, description="S3 listing pages (uploads, parts, versions) read per region per run; "
                                       "past it a finding says `at least`.")

    @field_validator("checks")
    @classmethod
    def _known_checks(cls, checks: list[str] | None) -> list[str] | None:
        unknown = sorted(set(checks or []) - set(RULES))
        if unknown:
            raise ValueError(f"unknown check(s) {', '.join(unknown)}; known: {', '.join(sorted(RULES))}. "
                             "Leave `checks` unset to run every check.")
        if checks is not None and not checks:
            raise ValueError("`checks` is empty: leave it unset to run every check, or list some.")
        return checks

    @field_validator("log_retention_days")
    @classmethod
    def _accepted_retention(cls, days: int) -> int:
        if days not in LOG_RETENTION_DAYS:
            raise ValueError(f"{days} is not a retention CloudWatch Logs accepts; pick one of "
                             f"{', '.join(map(str, LOG_RETENTION_DAYS))}.")
        return days

    def runs(self, kind: str) -> bool:
        return self.checks is None or kind in self.checks


def _young(r: Resource, policy: WastePolicy, now: datetime) -> bool:
    return r.created is not None and now - r.created < timedelta(days=policy.min_age_days)


def _hourly(key: Callable[[Resource], str]) -> Callable[[Resource, PriceTable, WastePolicy], Price]:
    def monthly(r: Resource, prices: PriceTable, policy: WastePolicy) -> Price:
        return hourly_monthly(prices, r.region, key(r))
    return monthly


def _size(n_bytes: float) -> str:
    if n_bytes >= GIB:
        return f"{n_bytes / GIB:,.1f} GiB"
    return f"{n_bytes / 1024**2:,.1f} MiB"


# --- network ----------------------------------------------------------------------------


def _idle_nat(r: Resource, policy: WastePolicy, now: datetime) -> str | None:
    if r.facts["state"] != "available" or _young(r, policy, now):
        return None
    moved = r.facts["bytes"]
    if moved > policy.nat_max_bytes:
        return None
    seen = "no CloudWatch datapoints" if not r.facts["datapoints"] else f"{moved:,.0f} bytes"
    return f"NAT gateway moved no traffic in {policy.nat_idle_days} days ({seen}) yet bills every hour"


IDLE_NAT = Rule("idle-nat-gateway", "NAT gateways with no traffic for `nat_idle_days` days", _idle_nat,
                _hourly(lambda r: "nat:hour"))

# Target states that mean the load balancer has something to send to (`unavailable`: health
# checks are off, `initial`: still registering).
SERVING_STATES = frozenset({"healthy", "unavailable", "initial"})


def _unused_lb(r: Resource, policy: WastePolicy, now: datetime) -> str | None:
    if r.facts["state"] not in ("active", "active_impaired") or _young(r, policy, now):
        return None
    states: dict[str, int] = r.facts["targets"]
    if not states:
        return f"{r.facts['type']} load balancer with no registered targets"
    if any(states.get(s) for s in SERVING_STATES):
        return None
    counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    return f"{r.facts['type']} load balancer with no healthy target ({counts})"


UNUSED_LB = Rule("unused-load-balancer", "Load balancers (ALB, NLB, GWLB, CLB) with no registered or healthy targets",
                 _unused_lb, _hourly(lambda r: f"elb:{r.facts['type']}:hour"))


# --- logs -------------------------------------------------------------------------------


def _no_retention(r: Resource, policy: WastePolicy, now: datetime) -> str | None:
    if r.facts["retention_days"] is not None or not r.facts["stored_bytes"]:
        return None
    return (f"log group {r.facts['name']} keeps {_size(r.facts['stored_bytes'])} forever (no retention); "
            f"offer: keep {policy.log_retention_days} days")


def _log_storage(r: Resource, prices: PriceTable, policy: WastePolicy) -> Price:
    p = prices.get(r.region, "logs:stored:gb")
    return Price(round(p.usd * r.facts["stored_bytes"] / GIB, 4), p.estimated)


LOG_NO_RETENTION = Rule("log-group-without-retention", "CloudWatch log groups that never expire their logs",
                        _no_retention, _log_storage, action="set-log-retention")


# --- S3 ---------------------------------------------------------------------------------


def lifecycle_rule_for(rules: Iterable[Mapping[str, Any]], key: str, action: str) -> Mapping[str, Any] | None:
    """The enabled lifecycle rule with `action` (e.g. `AbortIncompleteMultipartUpload`) that
    applies to `key`, or None. Rules filtering on tags or sizes are not counted: they may miss it."""
    for rule in rules:
        prefix = rule_prefix(rule)
        if rule.get("Status") == "Enabled" and rule.get(action) and prefix is not None and key.startswith(prefix):
            return rule
    return None


def stale_upload(initiated: datetime, policy: WastePolicy, now: datetime) -> bool:
    return now - initiated > timedelta(days=policy.multipart_min_age_days)


def _s3_bytes(r: Resource, prices: PriceTable, policy: WastePolicy) -> Price:
    usd, estimated = 0.0, False
    for storage_class, size in r.facts["bytes_by_class"].items():
        known = storage_class if prices.has(r.region, f"s3:{storage_class}:gb") else "STANDARD"
        p = s3_monthly(prices, r.region, known, size)
        usd, estimated = usd + p.usd, estimated or p.estimated
    return Price(round(usd, 4), estimated)


def _at_least(r: Resource) -> str:
    return "at least " if r.facts["truncated"] else ""


def _stale_uploads(r: Resource, policy: WastePolicy, now: datetime) -> str | None:
    if not r.facts["uploads"]:
        return None
    return (f"{_at_least(r)}{r.facts['uploads']:,} incomplete multipart uploads older than "
            f"{policy.multipart_min_age_days} days hold {_size(sum(r.facts['bytes_by_class'].values()))} "
            f"(oldest {r.facts['oldest'][:10]}) and no lifecycle rule aborts them")


S3_MULTIPART = Rule("s3-incomplete-multipart-uploads",
                    "S3 incomplete multipart uploads older than `multipart_min_age_days` that no lifecycle rule aborts",
                    _stale_uploads, _s3_bytes, action="add-abort-multipart-rule")


def _noncurrent(r: Resource, policy: WastePolicy, now: datetime) -> str | None:
    if not r.facts["versions"]:
        return None
    return (f"{_at_least(r)}{r.facts['versions']:,} noncurrent versions hold "
            f"{_size(sum(r.facts['bytes_by_class'].values()))} and no lifecycle rule ever expires them "
            f"(versioning {r.facts['versioning'].lower()}); offer: expire {policy.noncurrent_days} days after")


S3_NONCURRENT = Rule("s3-noncurrent-versions-kept", "S3 noncurrent object versions that no lifecycle rule expires",
                     _noncurrent, _s3_bytes, action="add-noncurrent-expiration-rule")


def _no_lifecycle(r: Resource, policy: WastePolicy, now: datetime) -> str | None:
    return None if r.facts["lifecycle_rules"] else "bucket has no lifecycle rule at all"


S3_NO_LIFECYCLE = Rule("s3-bucket-without-lifecycle", "S3 buckets with no lifecycle rule at all (information)",
                       _no_lifecycle, severity=Severity.INFO)


# --- EC2, EBS and RDS ----------------------------------------------------------------------

# Previous-generation family -> the same size one generation on, at a lower list price.
NEXT_GENERATION = {"t2": "t3", "m3": "m5", "m4": "m5", "c3": "c5", "c4": "c5", "r3": "r5", "r4": "r5"}
# Managed snapshots keep their own retention: AWS Backup and Data Lifecycle Manager tag theirs.
MANAGED_SNAPSHOT_TAGS = ("aws:backup:source-resource", "aws:dlm:lifecycle-policy-id")
GP3_MAX_IOPS, GP3_MAX_THROUGHPUT = 16_000, 1_000
IO1_KIB_PER_IO = 16  # io1 throughput is IOPS x 16 KiB, so gp3 gets the same


def _age_days(r: Resource, now: datetime) -> int:
    return (now - r.created).days if r.created else 0


def _old_rds_snapshot(r: Resource, policy: WastePolicy, now: datetime) -> str | None:
    age = _age_days(r, now)
    if r.facts["status"] != "available" or _young(r, policy, now):
        return None
    source = r.facts["db_instance"]
    if not r.facts["db_exists"]:
        return f"manual snapshot, {age} days old, of {source} which no longer exists"
    if age > policy.rds_snapshot_max_age_days:
        return f"manual snapshot of {source}, {age} days old (over {policy.rds_snapshot_max_age_days})"
    return None


def _rds_snapshot_price(r: Resource, prices: PriceTable, policy: WastePolicy) -> Price:
    # An upper bound: backup storage up to the region's provisioned database storage is free,
    # and a snapshot bills for the blocks it holds, at most the allocated size.
    p = prices.get(r.region, "rds-snapshot:gb")
    return Price(round(p.usd * r.facts["allocated_gb"], 4), p.estimated)


OLD_RDS_SNAPSHOT = Rule("old-rds-snapshot",
                        "RDS manual snapshots older than `rds_snapshot_max_age_days` or whose database is gone",
                        _old_rds_snapshot, _rds_snapshot_price)


def _old_ebs_snapshot(r: Resource, policy: WastePolicy, now: datetime) -> str | None:
    age = _age_days(r, now)
    if (r.facts["state"] != "completed" or not r.facts["volume_exists"] or r.facts["ami"]
            or any(t in r.tags for t in MANAGED_SNAPSHOT_TAGS) or age <= policy.snapshot_max_age_days):
        return None
    return f"{r.facts['size_gb']} GiB snapshot of {r.facts['volume_id']}, {age} days old (over {policy.snapshot_max_age_days})"


def _ebs_snapshot_price(r: Resource, prices: PriceTable, policy: WastePolicy) -> Price:
    return snapshot_monthly(prices, r.region, r.facts["size_gb"], r.facts["tier"])


OLD_EBS_SNAPSHOT = Rule("old-ebs-snapshot", "EBS snapshots of existing volumes older than `snapshot_max_age_days`",
                        _old_ebs_snapshot, _ebs_snapshot_price)


def _unused_ami(r: Resource, policy: WastePolicy, now: datetime) -> str | None:
    unused_for = timedelta(days=policy.ami_unused_days)
    last = r.facts["last_launched"]
    if (r.facts["instances"] or r.created is None or now - r.created <= unused_for
            or (last and now - datetime.fromisoformat(last) <= unused_for)):
        return None
    launched = f"last launched {last[:10]}" if last else "no launch recorded"
    return (f"AMI {r.facts['name']!r}, {_age_days(r, now)} days old, used by no instance ({launched}); "
            f"its {len(r.facts['snapshots'])} snapshots hold {r.facts['size_gb']} GiB")


def _ami_price(r: Resource, prices: PriceTable, policy: WastePolicy) -> Price:
    return snapshot_monthly(prices, r.region, r.facts["size_gb"])


UNUSED_AMI = Rule("unused-ami", "Own AMIs used by no instance for `ami_unused_days`, with their snapshots",
                  _unused_ami, _ami_price)


def _long_stopped(r: Resource, policy: WastePolicy, now: datetime) -> str | None:
    since = r.facts["stopped_since"]
    if r.facts["state"] != "stopped" or not since:
        return None
    days = (now - datetime.fromisoformat(since)).days
    if days <= policy.stopped_days:
        return None
    gb = sum(v["size_gb"] for v in r.facts["volumes"])
    ips = f" and {r.facts['public_ips']} Elastic IPs" if r.facts["public_ips"] else ""
    return f"{r.facts['instance_type']} stopped for {days} days; its {len(r.facts['volumes'])} volumes ({gb} GiB){ips} still bill"


def _stopped_price(r: Resource, prices: PriceTable, policy: WastePolicy) -> Price:
    parts = [ebs_volume_monthly(prices, r.region, v["type"], v["size_gb"], v.get("iops"), v.get("throughput"))
             for v in r.facts["volumes"]]
    parts += [public_ipv4_monthly(prices, r.region)] * r.facts["public_ips"]
    return Price(round(sum(p.usd for p in parts), 4), any(p.estimated for p in parts))


LONG_STOPPED = Rule("long-stopped-instance", "EC2 instances stopped for more than `stopped_days`",
                    _long_stopped, _stopped_price)


def next_generation(instance_type: str) -> str | None:
    family, _, size = instance_type.partition(".")
    return f"{NEXT_GENERATION[family]}.{size}" if family in NEXT_GENERATION and size else None


def _previous_generation(r: Resource, policy: WastePolicy, now: datetime) -> str | None:
    target = next_generation(r.facts["instance_type"])
    if r.facts["state"] != "running" or target is None:
        return None
    return f"{r.facts['instance_type']} is a previous generation; {target} is the same size for less"


def _generation_saving(r: Resource, prices: PriceTable, policy: WastePolicy) -> Price | None:
    old, new = r.facts["instance_type"], next_generation(r.facts["instance_type"])
    if not (prices.has(r.region, f"ec2:{old}:hour") and prices.has(r.region, f"ec2:{new}:hour")):
        return None
    before, after = hourly_monthly(prices, r.region, f"ec2:{old}:hour"), hourly_monthly(prices, r.region, f"ec2:{new}:hour")
    return Price(round(before.usd - after.usd, 4), before.estimated or after.estimated)


PREVIOUS_GENERATION = Rule("previous-generation-instance",
                           "Running EC2 instances of a previous generation (t2, m3, m4, c3, c4, r3, r4)",
                           _previous_generation, _generation_saving)


def gp3_equivalent(iops: int) -> tuple[int, int]:
    """(IOPS, MiB/s) a gp3 volume needs to match an io1 volume of `iops`."""
    return iops, max(125, min(GP3_MAX_THROUGHPUT, iops * IO1_KIB_PER_IO // 1024))


# io2 bills IOPS in tiers: above 32,000 at 70 % of the base rate, above 64,000 at 49 % (the Price
# List's us-east-1 figures: $0.065, $0.0455, $0.03185 per IOPS-month; the pricing page rounds the
# last to $0.032); io1 bills every IOPS at the base rate.
IO2_TIERS = ((32_000, 1.0), (64_000, 0.7), (None, 0.49))


def io2_iops_monthly(iops: int, base_rate: float) -> float:
    """io2's IOPS charge per month for `iops` provisioned, tier by tier."""
    usd, floor = 0.0, 0
    for ceiling, share in IO2_TIERS:
        in_tier = max(0, (iops if ceiling is None else min(iops, ceiling)) - floor)
        usd, floor = usd + in_tier * base_rate * share, ceiling or floor
    return usd


def _io1(r: Resource, policy: WastePolicy, now: datetime) -> str | None:
    iops = r.facts["iops"]
    if r.facts["volume_type"] != "io1" or GP3_MAX_IOPS < iops <= IO2_TIERS[0][0]:
        return None  # between the two, io2 costs the same as io1 and gp3 cannot do it
    if iops > GP3_MAX_IOPS:
        return (f"{r.facts['size_gb']} GiB io1 with {iops:,} IOPS; io2 bills the IOPS above "
                f"{IO2_TIERS[0][0]:,} at a lower tier (same IOPS, more durable)")
    gp3_iops, throughput = gp3_equivalent(iops)
    return (f"{r.facts['size_gb']} GiB io1 with {iops:,} IOPS; gp3 gives the same {gp3_iops:,} IOPS and "
            f"{throughput} MiB/s for less")


def _io1_saving(r: Resource, prices: PriceTable, policy: WastePolicy) -> Price:
    size, iops = r.facts["size_gb"], r.facts["iops"]
    before = ebs_volume_monthly(prices, r.region, "io1", size, iops)
    if iops > GP3_MAX_IOPS:  # to io2: the same storage price, tiered IOPS
        rate = prices.get(r.region, "ebs:io2:iops")
        saving = iops * prices.get(r.region, "ebs:io1:iops").usd - io2_iops_monthly(iops, rate.usd)
        # The tier shares are us-east-1's; elsewhere the figure is an estimate.
        return Price(round(saving, 4), before.estimated or rate.estimated or r.region != "us-east-1")
    after = ebs_volume_monthly(prices, r.region, "gp3", size, *gp3_equivalent(iops))
    return Price(round(before.usd - after.usd, 4), before.estimated or after.estimated)


IO1_VOLUME = Rule("io1-volume", "io1 volumes cheaper as gp3 (up to 16,000 IOPS) or io2 (over 32,000 IOPS)",
                  _io1, _io1_saving)


# --- ECR, DynamoDB, Secrets Manager ---------------------------------------------------------


def _untagged_images(r: Resource, policy: WastePolicy, now: datetime) -> str | None:
    if not r.facts["untagged_images"]:
        return None
    policy_note = "" if r.facts["lifecycle_policy"] else "; the repository has no lifecycle policy"
    return (f"{r.facts['untagged_images']:,} untagged images pushed over {policy.ecr_untagged_days} days ago hold "
            f"{_size(r.facts['untagged_bytes'])}{policy_note}")


def _ecr_price(r: Resource, prices: PriceTable, policy: WastePolicy) -> Price:
    p = prices.get(r.region, "ecr:gb")
    return Price(round(p.usd * r.facts["untagged_bytes"] / GIB, 4), p.estimated)


ECR_UNTAGGED = Rule("ecr-untagged-images", "ECR repositories holding untagged images older than `ecr_untagged_days`",
                    _untagged_images, _ecr_price)


def _ecr_no_policy(r: Resource, policy: WastePolicy, now: datetime) -> str | None:
    if r.facts["lifecycle_policy"]:
        return None
    return f"repository has no lifecycle policy ({r.facts['images']:,} images, {_size(r.facts['bytes'])})"


ECR_NO_LIFECYCLE = Rule("ecr-repository-without-lifecycle", "ECR repositories with no lifecycle policy (information)",
                        _ecr_no_policy, severity=Severity.INFO)


def dynamodb_monthly(r: Resource, prices: PriceTable, lookback_days: int) -> tuple[Price, Price]:
    """(provisioned, on-demand) $/month: capacity-unit hours now, vs the request units consumed
    over the lookback, scaled to a month."""
    rcu, wcu = prices.get(r.region, "dynamodb:rcu:hour"), prices.get(r.region, "dynamodb:wcu:hour")
    rru, wru = prices.get(r.region, "dynamodb:rru:million"), prices.get(r.region, "dynamodb:wru:million")
    provisioned = (r.facts["rcu"] * rcu.usd + r.facts["wcu"] * wcu.usd) * HOURS_PER_MONTH
    per_month = HOURS_PER_MONTH / 24 / lookback_days
    on_demand = (r.facts["consumed_reads"] / 1e6 * rru.usd + r.facts["consumed_writes"] / 1e6 * wru.usd) * per_month
    estimated = any(p.estimated for p in (rcu, wcu, rru, wru))
    return Price(round(provisioned, 4), estimated), Price(round(on_demand, 4), estimated)


def utilization(r: Resource, lookback_days: int) -> float:
    """The share of provisioned capacity consumed over the lookback (reads and writes, the higher)."""
    seconds = lookback_days * 86_400
    shares = [r.facts[used] / (r.facts[units] * seconds)
              for used, units in (("consumed_reads", "rcu"), ("consumed_writes", "wcu")) if r.facts[units]]
    return max(shares, default=0.0)


def _underused_table(r: Resource, policy: WastePolicy, now: datetime) -> str | None:
    if r.facts["billing_mode"] != "PROVISIONED" or _young(r, policy, now):
        return None
    used = utilization(r, policy.dynamodb_lookback_days)
    if used >= policy.dynamodb_max_utilization:
        return None
    return (f"provisioned {r.facts['rcu']:,} RCU / {r.facts['wcu']:,} WCU used at {used:.1%} over "
            f"{policy.dynamodb_lookback_days} days; on-demand would cost less")


def _on_demand_saving(r: Resource, prices: PriceTable, policy: WastePolicy) -> Price:
    provisioned, on_demand = dynamodb_monthly(r, prices, policy.dynamodb_lookback_days)
    return Price(round(max(0.0, provisioned.usd - on_demand.usd), 4), provisioned.estimated)


DYNAMODB_PROVISIONED = Rule("dynamodb-underused-provisioned",
                            "Provisioned DynamoDB tables using a small share of their capacity, cheaper on-demand",
                            _underused_table, _on_demand_saving, action="switch-to-on-demand")


def _unused_secret(r: Resource, policy: WastePolicy, now: datetime) -> str | None:
    if r.facts["deleted"]:
        return None
    last, limit = r.facts["last_accessed"], timedelta(days=policy.secret_unused_days)
    if last:
        idle = now - datetime.fromisoformat(last)
        return f"secret not read for {idle.days} days" if idle > limit else None
    if r.created is not None and now - r.created > limit:
        return f"secret never read in its {_age_days(r, now)} days"
    return None


def _secret_price(r: Resource, prices: PriceTable, policy: WastePolicy) -> Price:
    return prices.get(r.region, "secretsmanager:secret:month")


UNUSED_SECRET = Rule("unused-secret", "Secrets Manager secrets not read for `secret_unused_days`",
                     _unused_secret, _secret_price, below_floor=True)


# --- EMR, Kinesis, SageMaker ---------------------------------------------------------------

EMR_METRIC_MINUTES = 5  # IsIdle is published every five minutes
KINESIS_SHARD_BYTES, KINESIS_SHARD_RECORDS = 1024**2, 1000  # what one shard takes in per second


def _idle_emr(r: Resource, policy: WastePolicy, now: datetime) -> str | None:
    points = r.facts["is_idle"]
    if r.facts["state"] not in ("WAITING", "RUNNING") or len(points) < policy.emr_idle_minutes // EMR_METRIC_MINUTES:
        return None  # too few datapoints to say it was idle the whole time
    if min(points) < 1:
        return None
    nodes = ", ".join(f"{n} x {t}" for t, n in sorted(r.facts["instances"].items()))
    return f"EMR cluster {r.facts['name']!r} idle (IsIdle) for the last {policy.emr_idle_minutes} min; {nodes}"


def _emr_price(r: Resource, prices: PriceTable, policy: WastePolicy) -> Price | None:
    # The EC2 part only, a lower bound: the EMR fee per instance-hour is on top.
    if not all(prices.has(r.region, f"ec2:{t}:hour") for t in r.facts["instances"]):
        return None
    parts = [hourly_monthly(prices, r.region, f"ec2:{t}:hour", HOURS_PER_MONTH * n)
             for t, n in r.facts["instances"].items()]
    return Price(round(sum(p.usd for p in parts), 4), any(p.estimated for p in parts))


IDLE_EMR = Rule("idle-emr-cluster", "EMR clusters idle (IsIdle) for `emr_idle_minutes`", _idle_emr, _emr_price)


def shards_needed(r: Resource) -> int:
    """Shards the stream's busiest 5 minutes of the lookback needed (at least one)."""
    by_bytes = -(-r.facts["peak_bytes_per_second"] // KINESIS_SHARD_BYTES)
    by_records = -(-r.facts["peak_records_per_second"] // KINESIS_SHARD_RECORDS)
    return max(1, int(by_bytes), int(by_records))


def _idle_shards(r: Resource, policy: WastePolicy, now: datetime) -> str | None:
    if r.facts["mode"] != "PROVISIONED" or r.facts["status"] != "ACTIVE" or _young(r, policy, now):
        return None
    needed = shards_needed(r)
    if r.facts["shards"] <= needed:
        return None
    return (f"{r.facts['shards']} shards; the busiest 5 min of {policy.kinesis_lookback_days} days needed {needed} "
            f"({r.facts['peak_records_per_second']:,.0f} records/s, {_size(r.facts['peak_bytes_per_second'])}/s)")


def _idle_shard_price(r: Resource, prices: PriceTable, policy: WastePolicy) -> Price:
    idle = r.facts["shards"] - shards_needed(r)
    return hourly_monthly(prices, r.region, "kinesis:shard:hour", HOURS_PER_MONTH * idle)


KINESIS_IDLE_SHARDS = Rule("kinesis-idle-shards", "Provisioned Kinesis streams with more shards than their peak needs",
                           _idle_shards, _idle_shard_price)


def _notebook_running(r: Resource, policy: WastePolicy, now: datetime) -> str | None:
    since = r.facts["since"]
    if r.facts["status"] != "InService" or not since:
        return None
    hours = (now - datetime.fromisoformat(since)).total_seconds() / 3600
    if hours <= policy.notebook_max_hours:
        return None
    return f"{r.facts['instance_type']} notebook in service for {hours:,.0f} h since its last start or change"


def _notebook_price(r: Resource, prices: PriceTable, policy: WastePolicy) -> Price | None:
    key = f"sagemaker:{r.facts['instance_type']}:hour"
    return hourly_monthly(prices, r.region, key) if prices.has(r.region, key) else None


NOTEBOOK_RUNNING = Rule("sagemaker-notebook-left-running",
                        "SageMaker notebook instances in service for more than `notebook_max_hours`",
                        _notebook_running, _notebook_price, action="stop-notebook-instance")


# --- reservations that expire ------------------------------------------------------------

SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600


def commitment_monthly(count: int, hourly: float, upfront: float, term_seconds: int) -> float:
    """What a reservation commits per month: its hourly charges x 730 plus its upfront payment
    spread over the term, for `count` nodes or instances (AWS prices a reservation per unit)."""
    amortised = upfront * SECONDS_PER_MONTH / term_seconds if term_seconds else 0.0
    return round(count * (hourly * HOURS_PER_MONTH + amortised), 4)


def _expiring(r: Resource, policy: WastePolicy, now: datetime) -> str | None:
    ends = datetime.fromisoformat(r.facts["ends"])
    if r.facts["state"] != "active" or not now <= ends <= now + timedelta(days=policy.reservation_expiry_days):
        return None
    days = (ends - now).days
    when = "today" if days == 0 else f"in {days} day{'s' if days != 1 else ''}"
    return (f"{r.facts['what']} ends {when} ({ends:%Y-%m-%d}); from then on the usage it covers bills at "
            f"on-demand prices unless it is renewed")


def _commitment(r: Resource, prices: PriceTable, policy: WastePolicy) -> Price:
    # The reservation's own prices, not list prices: never an estimate.
    f = r.facts
    return Price(commitment_monthly(f["count"], f["hourly_usd"], f["upfront_usd"], f["term_seconds"]), False)


EXPIRING_REDSHIFT_RESERVATION = Rule(
    "expiring-redshift-reserved-node", "Redshift reserved nodes ending within `reservation_expiry_days`",
    _expiring, _commitment)
EXPIRING_RDS_RESERVATION = Rule(
    "expiring-rds-reserved-instance", "RDS reserved DB instances ending within `reservation_expiry_days`",
    _expiring, _commitment)
EXPIRING_SAVINGS_PLAN = Rule(
    "expiring-savings-plan", "Savings Plans ending within `reservation_expiry_days`", _expiring, _commitment)


# --- the catalogue, in the order of what they save a data platform ------------------------

RULES: dict[str, Rule] = {r.kind: r for r in (
    IDLE_NAT, UNUSED_LB, LOG_NO_RETENTION, S3_MULTIPART, S3_NONCURRENT, S3_NO_LIFECYCLE, OLD_RDS_SNAPSHOT,
    OLD_EBS_SNAPSHOT, UNUSED_AMI, LONG_STOPPED, PREVIOUS_GENERATION, IO1_VOLUME, ECR_UNTAGGED, ECR_NO_LIFECYCLE,
    DYNAMODB_PROVISIONED, UNUSED_SECRET, IDLE_EMR, KINESIS_IDLE_SHARDS, NOTEBOOK_RUNNING,
    EXPIRING_REDSHIFT_RESERVATION, EXPIRING_RDS_RESERVATION, EXPIRING_SAVINGS_PLAN)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def judge_rule(rule: Rule, resources: Iterable[Resource], scope: str, policy: WastePolicy,
               prices: PriceTable, now: datetime) -> list[Finding]:
    """One finding per resource the rule calls waste, priced, unless opted out or too cheap."""
    found = []
    for r in resources:
        if opted_out(dict(r.tags), policy.opt_out_tag):
            continue
        reason = rule.waste(r, policy, now)
        if reason is None:
            continue
        price = rule.monthly(r, prices, policy) if rule.monthly else None
        if price is not None and price.usd < policy.min_monthly_usd and not rule.below_floor:
            continue
        numbers = {**_jsonable(dict(r.facts)), "region": r.region}
        if r.created is not None:
            numbers["age_days"] = (now - r.created).days
        if price is not None:
            numbers["price_estimated"] = price.estimated
        elif rule.monthly:  # a priced check without a price for this one: said, never invented
            numbers["price_unknown"] = True
        found.append(Finding(
            kind=rule.kind, resource_id=r.id, scope=scope,
            severity=rule.severity if price is not None else Severity.INFO,
            reason=reason, numbers=numbers, monthly_cost_usd=price.usd if price is not None else None))
    return found


def metric_rows(findings: Iterable[Finding], scope: str, kinds: Iterable[str], now: datetime) -> list[dict]:
    """History per check and target: how many findings and what they cost per month (0 when none)."""
    totals = {k: [0, 0.0] for k in kinds}
    for f in findings:
        count_usd = totals.setdefault(f.kind, [0, 0.0])
        count_usd[0] += 1
        count_usd[1] += f.monthly_cost_usd or 0.0
    rows = []
    for kind, (count, usd) in sorted(totals.items()):
        subject = f"{scope}/{kind}"
        rows += [{"name": "waste.findings", "subject": subject, "ts": now, "value": count},
                 {"name": "waste.monthly_usd", "subject": subject, "ts": now, "value": round(usd, 2)}]
    return rows

