"""Seoul (ap-northeast-2) list prices: the bundle against Pricing-API-shaped data for the region.

tests/fixtures/pricing_ap_northeast_2.json holds GetProducts `PriceList` entries with the figures as
the Pricing API states them (rules/pricing.py SOURCES says where each was recorded). Every bundled
Seoul figure must be what the refresh parser reads from them, and every key of the categories the
issue names (EC2, RDS, EBS and its extras, snapshots, ElastiCache, Lambda, NAT, public IPv4) is either
bundled or a listed fallback, marked estimated.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from botocore.stub import Stubber
from prefect_aws import AwsCredentials

from rules.graviton import GravitonPolicy, rds_candidates
from rules.pricing import (
    _REGIONAL,
    _US_EAST_1,
    BUNDLED,
    SOURCES,
    Price,
    comparable,
    ebs_volume_monthly,
    hourly_monthly,
    public_ipv4_monthly,
    snapshot_monthly,
)
from tasks.aws.clients import Account
from tasks.aws.pricing import QUERIES, parse_price_list, refresh_price_table

REGION = "ap-northeast-2"
FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "pricing_ap_northeast_2.json").read_text())
PRICE_LIST = [json.dumps(entry) for entry in FIXTURE["PriceList"]]
CATEGORIES = ("ec2:", "rds:", "ebs:", "snapshot:", "elasticache:", "lambda:", "nat:", "ipv4:")

# No recorded ap-northeast-2 figure was found for these: they fall back to us-east-1, marked estimated.
KNOWN_FALLBACKS = {
    "ebs:io1:gb", "ebs:io1:iops", "ebs:io2:gb", "ebs:st1:gb", "ebs:sc1:gb", "ebs:standard:gb",
    "ec2:m7g.xlarge:hour", "ec2:m7g.2xlarge:hour", "ec2:m7g.4xlarge:hour",
    "ec2:c7g.large:hour", "ec2:c7g.xlarge:hour", "ec2:c7g.2xlarge:hour",
    "ec2:r7g.large:hour", "ec2:r7g.xlarge:hour", "ec2:r7g.2xlarge:hour",
    "rds:db.t3.micro:hour", "rds:db.t3.medium:hour", "rds:db.m5.large:hour", "rds:db.m5.xlarge:hour",
    "rds:db.m6g.large:hour", "rds:db.m7g.xlarge:hour", "rds:db.r5.large:hour", "rds:db.r6g.large:hour",
    "elasticache:cache.t3.medium:hour", "elasticache:cache.t4g.medium:hour", "elasticache:cache.m5.large:hour",
    "elasticache:cache.m6g.large:hour", "elasticache:cache.m7g.large:hour", "elasticache:cache.r5.large:hour",
    "elasticache:cache.r6g.large:hour",
}


def test_every_bundled_seoul_figure_is_what_the_pricing_api_states():
    parsed = parse_price_list(PRICE_LIST)[REGION]
    bundled = _REGIONAL[REGION]
    assert set(SOURCES[REGION]) == set(bundled)  # each figure says where it came from
    assert {key: parsed.get(key) for key in bundled} == bundled
    for key in bundled:
        assert BUNDLED.get(REGION, key) == Price(parsed[key], False)


def test_no_seoul_key_of_the_issue_categories_is_silently_missing():
    wanted = {key for key in _US_EAST_1 if key.startswith(CATEGORIES)}
    bundled = set(_REGIONAL[REGION])
    assert not KNOWN_FALLBACKS & bundled
    assert wanted - bundled == KNOWN_FALLBACKS
    for key in KNOWN_FALLBACKS:
        assert BUNDLED.get(REGION, key) == Price(_US_EAST_1[key], True)


def test_the_fixture_keeps_the_prices_the_parser_must_not_take():
    parsed = parse_price_list(PRICE_LIST)[REGION]
    assert parsed["rds:db.t4g.micro:hour"] == 0.025  # not the Multi-AZ 0.051 listed before it
    assert parsed["elasticache:cache.t4g.micro:hour"] == 0.024  # not the Extended Support 0.019
    assert parsed["elasticache:cache.r7g.large:hour"] == 0.262  # Redis, not Valkey's 0.2096
    assert parsed["lambda:x86_64:gb-second"] == 0.0000166667  # not provisioned concurrency
    assert parsed["ebs:gp3:throughput"] == 0.0456  # 46.6944 USD per GiBps-month / 1024


def test_seoul_volumes_instances_and_addresses_are_exact():
    # 500 GB + 3,000 IOPS and 125 MB/s above the free baseline, all at Seoul prices
    assert ebs_volume_monthly(BUNDLED, REGION, "gp3", 500, 6000, 250) == Price(
        round(500 * 0.0912 + 3000 * 0.0057 + 125 * 0.0456, 4), False)
    assert ebs_volume_monthly(BUNDLED, REGION, "gp2", 100) == Price(11.4, False)
    assert snapshot_monthly(BUNDLED, REGION, 100) == Price(5.0, False)
    assert hourly_monthly(BUNDLED, REGION, "ec2:t3.micro:hour") == Price(round(0.013 * 730, 4), False)
    assert hourly_monthly(BUNDLED, REGION, "nat:hour") == Price(round(0.059 * 730, 4), False)
    assert hourly_monthly(BUNDLED, REGION, "rds:db.t4g.micro:hour") == Price(18.25, False)
    assert public_ipv4_monthly(BUNDLED, REGION) == Price(3.65, False)
    # An io1 volume has no recorded Seoul price: us-east-1 stands in and says so.
    assert ebs_volume_monthly(BUNDLED, REGION, "io1", 100, 1000) == Price(77.5, True)


def test_refresh_reads_every_family_with_its_filters_and_reproduces_the_bundle(monkeypatch):
    account = Account(AwsCredentials(region_name="us-east-1"))
    pricing = account.client("pricing", "us-east-1")
    stubber = Stubber(pricing)
    extra = {
        ("AmazonEC2", "Compute Instance"): {"operatingSystem": "Linux", "tenancy": "Shared",
                                            "preInstalledSw": "NA", "capacitystatus": "Used"},
        ("AmazonRDS", "Database Instance"): {"databaseEngine": "PostgreSQL", "deploymentOption": "Single-AZ"},
        ("AmazonElastiCache", "Cache Instance"): {"cacheEngine": "Redis"},
    }
    for service, family in QUERIES:
        entries = [raw for raw, entry in zip(PRICE_LIST, FIXTURE["PriceList"], strict=True)
                   if (entry["serviceCode"], entry["product"]["productFamily"]) == (service, family)]
        filters = {"regionCode": REGION, "productFamily": family, **extra.get((service, family), {})}
        stubber.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": entries}, {
            "ServiceCode": service,
            "Filters": [{"Type": "TERM_MATCH", "Field": f, "Value": v} for f, v in filters.items()]})
    monkeypatch.setattr(account, "client", lambda service, region=None, config=None: pricing)
    with stubber:
        table = refresh_price_table.fn(account, [REGION])
        stubber.assert_no_pending_responses()
    overrides = table.overrides[REGION]
    assert {key: overrides.get(key) for key in _REGIONAL[REGION]} == _REGIONAL[REGION]
    assert len(QUERIES) == 11  # one call per family and region: 11 for Seoul


def test_a_refreshed_price_replaces_a_fallback():
    table = BUNDLED.model_copy(update={"overrides": {REGION: {"ebs:io1:iops": 0.07}}})
    assert table.get(REGION, "ebs:io1:iops") == Price(0.07, False)


def test_a_saving_compares_prices_on_one_basis():
    # Both Seoul figures exist: Seoul's own prices.
    assert comparable(BUNDLED, REGION, "ec2:m5.large:hour", "ec2:m7g.large:hour") == [
        Price(0.118, False), Price(0.1003, False)]
    # db.m5.large has no Seoul figure: an exact Seoul db.m7g.large less a us-east-1 stand-in would make
    # the move look dearer than it is, so both come from us-east-1, marked estimated.
    assert comparable(BUNDLED, REGION, "rds:db.m5.large:hour", "rds:db.m7g.large:hour") == [
        Price(0.178, True), Price(0.168, True)]
    db = SimpleNamespace(db_id="orders", region=REGION, db_class="db.m5.large", engine="postgres",
                         engine_version="16.4", status="available")
    [finding] = rds_candidates([db], set(), BUNDLED, GravitonPolicy())
    assert finding.monthly_cost_usd == round((0.178 - 0.168) * 730, 2)
    assert "(estimated price)" in finding.reason
