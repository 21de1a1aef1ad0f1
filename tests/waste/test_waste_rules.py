"""waste-checks: each rule of `rules/waste.py` without I/O, on plain `Resource`s and a fixed `now`.

Prices are the bundled us-east-1 list prices, worked out by hand: NAT gateway $0.045/h, ALB and
NLB $0.0225/h, CLB $0.025/h (x 730 h); CloudWatch Logs storage $0.03 per GB-month.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from rules.findings import Severity
from rules.pricing import BUNDLED
from rules.waste import (
    DYNAMODB_PROVISIONED,
    EXPIRING_SAVINGS_PLAN,
    IDLE_EMR,
    IDLE_NAT,
    IO1_VOLUME,
    KINESIS_IDLE_SHARDS,
    LOG_NO_RETENTION,
    LONG_STOPPED,
    NOTEBOOK_RUNNING,
    OLD_EBS_SNAPSHOT,
    OLD_RDS_SNAPSHOT,
    PREVIOUS_GENERATION,
    RULES,
    S3_MULTIPART,
    S3_NO_LIFECYCLE,
    S3_NONCURRENT,
    UNUSED_AMI,
    UNUSED_LB,
    UNUSED_SECRET,
    Resource,
    WastePolicy,
    commitment_monthly,
    judge_rule,
    lifecycle_rule_for,
    stale_upload,
)

REGION = "us-east-1"
SCOPE = f"123456789012/{REGION}"
GIB = 1024**3
NOW = datetime(2026, 11, 20, 6, 0, tzinfo=timezone.utc)
OLD = NOW - timedelta(days=30)
NAT_MONTH, ALB_MONTH, CLB_MONTH = 32.85, 16.425, 18.25


def r(id_: str, created: datetime | None = OLD, tags: dict | None = None, **facts) -> Resource:
    return Resource(id=id_, region=REGION, tags=tags or {}, created=created, facts=facts)


def judged(rule, *resources, **policy) -> list[tuple[str, str, float | None]]:
    found = judge_rule(rule, resources, SCOPE, WastePolicy(**policy), BUNDLED, NOW)
    return [(f.resource_id, f.reason, f.monthly_cost_usd) for f in found]


def test_idle_nat_gateway():
    nat = {"state": "available", "vpc_id": "vpc-1", "subnet_id": "s-1", "connectivity": "public"}
    assert judged(IDLE_NAT,
                  r("nat-idle", bytes=0, datapoints=7, **nat),
                  r("nat-silent", bytes=0, datapoints=0, **nat),
                  r("nat-busy", bytes=10, datapoints=7, **nat),
                  r("nat-young", created=NOW - timedelta(days=2), bytes=0, datapoints=0, **nat),
                  r("nat-kept", tags={"Dataplatform-Ops:Keep": ""}, bytes=0, datapoints=0, **nat)) == [
        ("nat-idle", "NAT gateway moved no traffic in 7 days (0 bytes) yet bills every hour", NAT_MONTH),
        ("nat-silent", "NAT gateway moved no traffic in 7 days (no CloudWatch datapoints) yet bills every hour",
         NAT_MONTH)]
    # A little keep-alive traffic can be allowed for.
    assert [f[0] for f in judged(IDLE_NAT, r("nat-busy", bytes=10, datapoints=7, **nat), nat_max_bytes=100)] == [
        "nat-busy"]


def test_unused_load_balancer():
    lb = {"state": "active", "target_groups": 1, "dns_name": ""}
    assert judged(UNUSED_LB,
                  r("app/empty", type="application", targets={}, **lb),
                  r("net/stopped", type="network", targets={"unused": 2, "unhealthy": 1}, **lb),
                  r("classic/old", type="classic", targets={}, **lb),
                  r("app/serving", type="application", targets={"healthy": 1, "unhealthy": 3}, **lb),
                  r("gwy/no-checks", type="gateway", targets={"unavailable": 1}, **lb),
                  r("app/new", created=NOW - timedelta(days=1), type="application", targets={}, **lb)) == [
        ("app/empty", "application load balancer with no registered targets", ALB_MONTH),
        ("net/stopped", "network load balancer with no healthy target (1 unhealthy, 2 unused)", ALB_MONTH),
        ("classic/old", "classic load balancer with no registered targets", CLB_MONTH)]


def group(name: str, stored: int, retention: int | None = None) -> Resource:
    return r(f"arn:{name}", name=name, stored_bytes=stored, retention_days=retention, log_class="STANDARD")


def test_log_group_without_retention_is_priced_by_stored_bytes():
    assert judged(LOG_NO_RETENTION,
                  group("/forever", 50 * GIB), group("/kept-30d", 50 * GIB, 30), group("/empty", 0),
                  group("/small", GIB)) == [
        ("arn:/forever", "log group /forever keeps 50.0 GiB forever (no retention); offer: keep 30 days", 1.5)]
    # Below the $/month floor it is not reported; with the floor at 0 it is, at its exact price.
    assert judged(LOG_NO_RETENTION, group("/small", GIB), min_monthly_usd=0, log_retention_days=14) == [
        ("arn:/small", "log group /small keeps 1.0 GiB forever (no retention); offer: keep 14 days", 0.03)]


def test_a_finding_carries_its_numbers_and_a_price_outside_us_east_1_is_marked_estimated():
    nat = Resource(id="nat-1", region="eu-west-1", created=OLD,
                   facts={"state": "available", "bytes": 0, "datapoints": 0, "vpc_id": "v", "subnet_id": "s",
                          "connectivity": "public"})
    [f] = judge_rule(IDLE_NAT, [nat], "1/eu-west-1", WastePolicy(), BUNDLED, NOW)
    assert f.severity == Severity.WARNING and f.scope == "1/eu-west-1"
    assert f.numbers == {"state": "available", "bytes": 0, "datapoints": 0, "vpc_id": "v", "subnet_id": "s",
                         "connectivity": "public", "region": "eu-west-1", "age_days": 30, "price_estimated": True}


@pytest.mark.parametrize(("policy", "message"), [
    ({"checks": ["idle-nat-gateway", "unused-vpc"]}, "unknown check.*unused-vpc.*known: "),
    ({"checks": []}, "`checks` is empty"),
    ({"log_retention_days": 10}, "10 is not a retention CloudWatch Logs accepts"),
])
def test_bad_policy_names_the_field_and_the_fix(policy, message):
    with pytest.raises(ValueError, match=message):
        WastePolicy(**policy)


def test_every_rule_says_what_it_is():
    assert all(rule.kind == kind and rule.title for kind, rule in RULES.items())




# --- S3 -----------------------------------------------------------------------------------

ABORT = {"ID": "abort", "Status": "Enabled", "Filter": {"Prefix": "tmp/"},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 3}}


@pytest.mark.parametrize(("rules", "key", "found"), [
    ([ABORT], "tmp/a.parquet", "abort"),
    ([ABORT], "raw/a.parquet", None),  # the rule covers tmp/ only
    ([{**ABORT, "Status": "Disabled"}], "tmp/a.parquet", None),
    ([{**ABORT, "Filter": {"And": {"Prefix": "tmp/", "Tags": [{"Key": "k", "Value": "v"}]}}}], "tmp/a", None),
    ([{"ID": "old-style", "Status": "Enabled", "Prefix": "", "AbortIncompleteMultipartUpload": {
        "DaysAfterInitiation": 7}}], "any/key", "old-style"),
    ([{"ID": "expire", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 9}}], "tmp/a", None),
])
def test_which_lifecycle_rule_applies_to_a_key(rules, key, found):
    rule = lifecycle_rule_for(rules, key, "AbortIncompleteMultipartUpload")
    assert (rule["ID"] if rule else None) == found


def test_an_upload_is_stale_after_multipart_min_age_days():
    policy = WastePolicy()
    assert not stale_upload(NOW - timedelta(days=7), policy, NOW)
    assert stale_upload(NOW - timedelta(days=7, seconds=1), policy, NOW)
    assert not stale_upload(NOW - timedelta(days=8), WastePolicy(multipart_min_age_days=9), NOW)


def bucket_part(kind: str, count_key: str, count: int, truncated: bool = False, **by_class) -> Resource:
    return r(f"s3://b/#{kind}", bucket="b", truncated=truncated, bytes_by_class=by_class,
             **{count_key: count}, oldest="2026-10-01T00:00:00+00:00", versioning="Enabled")


def test_s3_uploads_and_noncurrent_versions_are_priced_by_storage_class():
    assert judged(S3_MULTIPART, bucket_part("multipart", "uploads", 3, STANDARD=100 * GIB),
                  bucket_part("multipart", "uploads", 0)) == [
        ("s3://b/#multipart", "3 incomplete multipart uploads older than 7 days hold 100.0 GiB (oldest 2026-10-01) "
                              "and no lifecycle rule aborts them", 2.3)]
    # $0.023 STANDARD + $0.0125 STANDARD_IA per GB-month; a class without a price counts as STANDARD.
    assert judged(S3_NONCURRENT, bucket_part("noncurrent", "versions", 1200, True, STANDARD=40 * GIB,
                                             STANDARD_IA=80 * GIB, REDUCED_REDUNDANCY=10 * GIB)) == [
        ("s3://b/#noncurrent", "at least 1,200 noncurrent versions hold 130.0 GiB and no lifecycle rule ever "
                               "expires them (versioning enabled); offer: expire 30 days after",
         round(40 * 0.023 + 80 * 0.0125 + 10 * 0.023, 4))]


def test_a_bucket_without_lifecycle_rules_is_information_without_a_price():
    found = judge_rule(S3_NO_LIFECYCLE, [r("s3://b/", bucket="b", lifecycle_rules=0),
                                        r("s3://c/", bucket="c", lifecycle_rules=2),
                                        r("s3://d/", tags={"dataplatform-ops:keep": ""}, bucket="d",
                                          lifecycle_rules=0)], SCOPE, WastePolicy(), BUNDLED, NOW)
    assert [(f.resource_id, f.severity, f.monthly_cost_usd, f.reason) for f in found] == [
        ("s3://b/", Severity.INFO, None, "bucket has no lifecycle rule at all")]


# --- EC2, EBS, RDS --------------------------------------------------------------------------


def test_an_ami_launched_recently_or_in_use_is_not_unused():
    ami = {"name": "etl", "snapshots": ["snap-1", "snap-2"], "size_gb": 40}
    assert judged(UNUSED_AMI,
                  r("ami-old", created=NOW - timedelta(days=200), instances=0, last_launched=None, **ami),
                  r("ami-launched", created=NOW - timedelta(days=200), instances=0,
                    last_launched=(NOW - timedelta(days=10)).isoformat(), **ami),
                  r("ami-in-use", created=NOW - timedelta(days=200), instances=1, last_launched=None, **ami),
                  r("ami-young", created=NOW - timedelta(days=30), instances=0, last_launched=None, **ami)) == [
        ("ami-old", "AMI 'etl', 200 days old, used by no instance (no launch recorded); its 2 snapshots hold "
                    "40 GiB", 2.0)]


def test_snapshots_past_retention_skip_orphans_amis_and_managed_backups():
    snap = {"volume_id": "vol-1", "size_gb": 100, "tier": "standard", "state": "completed"}
    old = NOW - timedelta(days=91)
    assert judged(OLD_EBS_SNAPSHOT,
                  r("snap-old", created=old, volume_exists=True, ami=None, **snap),
                  r("snap-orphan", created=old, volume_exists=False, ami=None, **snap),
                  r("snap-ami", created=old, volume_exists=True, ami="ami-1", **snap),
                  r("snap-backup", created=old, tags={"aws:backup:source-resource": "x"}, volume_exists=True,
                    ami=None, **snap),
                  r("snap-90d", created=NOW - timedelta(days=90), volume_exists=True, ami=None, **snap)) == [
        ("snap-old", "100 GiB snapshot of vol-1, 91 days old (over 90)", 5.0)]


def test_rds_manual_snapshots_old_or_of_a_database_that_is_gone():
    snap = {"engine": "postgres", "allocated_gb": 100, "status": "available"}
    assert judged(OLD_RDS_SNAPSHOT,
                  r("s-old", created=NOW - timedelta(days=91), db_instance="orders", db_exists=True, **snap),
                  r("s-gone", created=NOW - timedelta(days=8), db_instance="legacy", db_exists=False, **snap),
                  r("s-recent", created=NOW - timedelta(days=8), db_instance="orders", db_exists=True, **snap),
                  r("s-gone-today", created=NOW - timedelta(days=1), db_instance="legacy", db_exists=False,
                    **snap)) == [
        ("s-old", "manual snapshot of orders, 91 days old (over 90)", 9.5),
        ("s-gone", "manual snapshot, 8 days old, of legacy which no longer exists", 9.5)]


def test_a_long_stopped_instance_costs_its_volumes_and_addresses():
    volumes = [{"id": "vol-1", "type": "gp2", "size_gb": 100, "iops": None, "throughput": None},
               {"id": "vol-2", "type": "io1", "size_gb": 10, "iops": 1000, "throughput": None}]
    assert judged(LONG_STOPPED,
                  r("i-1", state="stopped", instance_type="m5.large", volumes=volumes, public_ips=2,
                    stopped_since=(NOW - timedelta(days=31)).isoformat()),
                  r("i-2", state="stopped", instance_type="m5.large", volumes=volumes, public_ips=0,
                    stopped_since=(NOW - timedelta(days=30)).isoformat()),
                  r("i-3", state="stopped", instance_type="m5.large", volumes=volumes, public_ips=0,
                    stopped_since=None)) == [
        # 100 x $0.10 + (10 x $0.125 + 1,000 x $0.065) + 2 x $3.65
        ("i-1", "m5.large stopped for 31 days; its 2 volumes (110 GiB) and 2 Elastic IPs still bill",
         10 + 1.25 + 65 + 7.3)]


def test_previous_generation_saving_and_a_type_without_a_price_is_said_not_invented():
    found = judge_rule(PREVIOUS_GENERATION, [
        r("i-r4", state="running", instance_type="r4.xlarge", auto_scaling_group=None),
        r("i-c3", state="running", instance_type="c3.8xlarge", auto_scaling_group=None),
        r("i-m5", state="running", instance_type="m5.large", auto_scaling_group=None),
        r("i-stopped", state="stopped", instance_type="t2.micro", auto_scaling_group=None)],
        SCOPE, WastePolicy(), BUNDLED, NOW)
    assert [(f.resource_id, f.monthly_cost_usd, f.severity, f.numbers.get("price_unknown")) for f in found] == [
        ("i-r4", round((0.266 - 0.252) * 730, 4), Severity.WARNING, None),
        ("i-c3", None, Severity.INFO, True)]


def test_io1_up_to_16000_iops_moves_to_gp3_with_matching_throughput():
    assert judged(IO1_VOLUME, r("vol-a", volume_type="io1", size_gb=100, iops=16000, state="in-use",
                                attached_to=[]),
                  r("vol-b", volume_type="io1", size_gb=100, iops=16001, state="in-use", attached_to=[])) == [
        # io1: 100 x 0.125 + 16,000 x 0.065 = 1,052.50; gp3: 100 x 0.08 + 13,000 x 0.005 + (250 - 125) x 0.04 = 78
        ("vol-a", "100 GiB io1 with 16,000 IOPS; gp3 gives the same 16,000 IOPS and 250 MiB/s for less", 974.5)]


def test_io1_over_32000_iops_moves_to_io2_whose_iops_above_32000_bill_at_a_lower_tier():
    io1 = {"volume_type": "io1", "size_gb": 1000, "state": "in-use", "attached_to": []}
    found = judged(IO1_VOLUME, r("vol-32k", iops=32_000, **io1), r("vol-40k", iops=40_000, **io1),
                   r("vol-64k", iops=64_000, **io1))
    # 8,000 and 32,000 IOPS above 32,000 at $0.065 on io1 and $0.0455 on io2 (us-east-1)
    assert [(f[0], f[2]) for f in found] == [("vol-40k", 156.0), ("vol-64k", 624.0)]
    assert found[0][1] == ("1000 GiB io1 with 40,000 IOPS; io2 bills the IOPS above 32,000 at a lower tier "
                           "(same IOPS, more durable)")
    eu = judge_rule(IO1_VOLUME, [Resource("vol-eu", "eu-west-1", facts={**io1, "iops": 40_000})], SCOPE,
                    WastePolicy(), BUNDLED, NOW)
    # eu-west-1: 8,000 x $0.072 x 30 %, the tier share taken from us-east-1: an estimate
    assert [(f.monthly_cost_usd, f.numbers["price_estimated"]) for f in eu] == [(172.8, True)]


# --- DynamoDB, Secrets Manager ---------------------------------------------------------------


def test_a_secret_read_recently_is_in_use():
    assert judged(UNUSED_SECRET,
                  r("s-read", name="a", deleted=False, last_accessed=(NOW - timedelta(days=10)).isoformat()),
                  r("s-stale", name="b", deleted=False, last_accessed=(NOW - timedelta(days=91)).isoformat()),
                  r("s-never", created=NOW - timedelta(days=91), name="c", deleted=False, last_accessed=None),
                  r("s-new", created=NOW - timedelta(days=89), name="d", deleted=False, last_accessed=None),
                  r("s-deleting", created=NOW - timedelta(days=300), name="e", deleted=True, last_accessed=None)) == [
        ("s-stale", "secret not read for 91 days", 0.4), ("s-never", "secret never read in its 91 days", 0.4)]


def table(name: str, rcu: int, wcu: int, reads: float, writes: float) -> Resource:
    return r(name, table=name, billing_mode="PROVISIONED", rcu=rcu, wcu=wcu, indexes=0,
             consumed_reads=reads, consumed_writes=writes)


def test_a_table_is_offered_on_demand_only_when_underused_and_cheaper():
    seconds = 14 * 86_400
    found = judged(DYNAMODB_PROVISIONED,
                   table("idle", 100, 100, 0, 0),
                   table("writes-busy", 100, 100, 0, 100 * seconds * 0.5),  # writes at 50%
                   table("just-under", 100, 100, 100 * seconds * 0.29, 0))
    # Provisioned 100 RCU + 100 WCU: (0.013 + 0.065) x 730 = $56.94; idle on-demand costs nothing.
    assert [(f[0], f[2]) for f in found] == [
        ("idle", 56.94),
        ("just-under", round(56.94 - 100 * seconds * 0.29 / 1e6 * 0.125 * 730 / 24 / 14, 4))]


# --- EMR, Kinesis, SageMaker -----------------------------------------------------------------


def test_an_emr_cluster_is_idle_only_when_every_datapoint_of_the_window_says_so():
    c = {"name": "etl", "state": "WAITING", "instances": {"m5.xlarge": 3}}
    found = judged(IDLE_EMR, r("j-idle", is_idle=[1] * 6, **c), r("j-busy", is_idle=[1, 1, 0, 1, 1, 1], **c),
                   r("j-short", is_idle=[1] * 5, **c),
                   r("j-unpriced", is_idle=[1] * 6, **{**c, "instances": {"x2iedn.32xlarge": 1}}),
                   min_monthly_usd=0)
    assert [(f[0], f[2]) for f in found] == [("j-idle", 420.48), ("j-unpriced", None)]


def stream(name: str, shards: int, bytes_s: float, records_s: float, mode: str = "PROVISIONED") -> Resource:
    return r(name, name=name, status="ACTIVE", mode=mode, shards=shards, peak_bytes_per_second=bytes_s,
             peak_records_per_second=records_s)


def test_kinesis_shards_needed_by_bytes_or_records():
    assert judged(KINESIS_IDLE_SHARDS,
                  stream("by-bytes", 4, 2.5 * 1024**2, 10),  # 3 needed
                  stream("by-records", 4, 0, 3001),  # 4 needed
                  stream("silent", 2, 0, 0),  # 1 needed
                  stream("on-demand", 8, 0, 0, mode="ON_DEMAND")) == [
        ("by-bytes", "4 shards; the busiest 5 min of 7 days needed 3 (10 records/s, 2.5 MiB/s)", 10.95),
        ("silent", "2 shards; the busiest 5 min of 7 days needed 1 (0 records/s, 0.0 MiB/s)", 10.95)]


def test_a_notebook_in_service_past_the_limit():
    nb = {"name": "n", "status": "InService", "instance_type": "ml.t3.large"}
    assert judged(NOTEBOOK_RUNNING, r("nb-1", since=(NOW - timedelta(hours=25)).isoformat(), **nb),
                  r("nb-2", since=(NOW - timedelta(hours=23)).isoformat(), **nb)) == [
        ("nb-1", "ml.t3.large notebook in service for 25 h since its last start or change", 73.0)]


# --- reservations ----------------------------------------------------------------------------


def commitment(name: str, ends: datetime, state: str = "active", usd: float = 100.0, **tags: str) -> Resource:
    return r(name, tags=tags, what="a plan", state=state, ends=ends.isoformat(), count=1, hourly_usd=usd / 730,
             upfront_usd=0.0, term_seconds=0)


def test_a_commitment_is_reported_from_30_days_before_its_end_until_it_ends():
    found = judged(EXPIRING_SAVINGS_PLAN,
                   commitment("today", NOW + timedelta(hours=3)),
                   commitment("one-day", NOW + timedelta(days=1, hours=1)),
                   commitment("day-30", NOW + timedelta(days=30)),
                   commitment("day-31", NOW + timedelta(days=30, seconds=1)),
                   commitment("ended", NOW - timedelta(seconds=1)),
                   commitment("queued", NOW + timedelta(days=3), state="queued"),
                   commitment("kept", NOW + timedelta(days=3), **{"dataplatform-ops:keep": "yes"}),
                   commitment("cheap", NOW + timedelta(days=3), usd=0.5))
    assert [(f[0], f[1].split(" (")[0], f[2]) for f in found] == [
        ("today", "a plan ends today", 100.0), ("one-day", "a plan ends in 1 day", 100.0),
        ("day-30", "a plan ends in 30 days", 100.0)]


def test_the_monthly_commitment_adds_hourly_charges_and_the_upfront_spread_over_the_term():
    year = 365 * 86_400
    assert commitment_monthly(1, 0.0, 8_760.0, year) == 730.0  # all upfront: $1 an hour of the term
    assert commitment_monthly(3, 0.25, 0.0, year) == 547.5  # no upfront: 3 x $0.25 x 730
    assert commitment_monthly(2, 0.1, 1_000.0, 3 * year) == round(2 * (73 + 1_000 / 36), 4)


def test_io2_iops_are_billed_in_the_price_lists_tiers():
    from rules.waste import io2_iops_monthly

    # us-east-1 Price List: 32,000 x 0.065 + 32,000 x 0.0455 + 16,000 x 0.03185 = 2,080 + 1,456 + 509.60
    assert io2_iops_monthly(80_000, 0.065) == pytest.approx(4_045.60)
    assert io2_iops_monthly(20_000, 0.065) == pytest.approx(1_300.00)
