"""Refresh the bundled price table from the AWS Pricing API (GetProducts), when allowed: the
`prices` hook every AWS cost job declares (`Job(prices=refreshed_prices)`).

Only the keys the cost rules use are read: EBS GB-month per volume type, provisioned IOPS and
throughput, snapshot GB-month, public IPv4 per hour, S3 storage per class (first tier), EC2
instance hours (Linux, shared tenancy, no pre-installed software), RDS instance hours (PostgreSQL,
Single-AZ), ElastiCache node hours, Lambda GB-seconds and NAT gateway hours.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.config import Config
from prefect import task
from prefect.cache_policies import NO_CACHE

from rules.config import PricedPolicy
from rules.pricing import BUNDLED, PriceTable
from tasks.aws.clients import Account, error_summary, paginate
from tasks.aws.permissions import requires

if TYPE_CHECKING:
    from tasks.runner import AwsTarget, RunContext

PRICING_REGION = "us-east-1"  # the Pricing API answers in us-east-1 (and two other regions)
# Prices are optional (the bundle stands in): a failing Pricing API costs two short attempts
# (at most 2 x 5 s when it never answers), not the adaptive retries' half minute.
PRICING_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=2, read_timeout=5)
# A refreshed table is kept in the store this long, per job (watermark `PRICE_WATERMARK`).
PRICE_CACHE_DAYS = 7
PRICE_WATERMARK = "price-table"

# (service code, product family) pairs read per region.
QUERIES = (
    ("AmazonEC2", "Storage"),
    ("AmazonEC2", "Storage Snapshot"),
    ("AmazonEC2", "System Operation"),
    ("AmazonEC2", "Provisioned Throughput"),
    ("AmazonVPC", "IP Address"),
    ("AmazonS3", "Storage"),
    ("AmazonEC2", "Compute Instance"),
    ("AmazonEC2", "NAT Gateway"),
    ("AmazonRDS", "Database Instance"),
    ("AmazonElastiCache", "Cache Instance"),
    ("AWSLambda", "Serverless"),
)

# Extra TERM_MATCH filters for the families whose unfiltered answer runs to thousands of products
# (every OS, tenancy and licence of every instance type): the same conditions `price_key` checks,
# so a region's instance prices stay a handful of pages.
QUERY_FILTERS: dict[tuple[str, str], dict[str, str]] = {
    ("AmazonEC2", "Compute Instance"): {"operatingSystem": "Linux", "tenancy": "Shared",
                                        "preInstalledSw": "NA", "capacitystatus": "Used"},
    ("AmazonRDS", "Database Instance"): {"databaseEngine": "PostgreSQL", "deploymentOption": "Single-AZ"},
    ("AmazonElastiCache", "Cache Instance"): {"cacheEngine": "Redis"},
}

# A usage type starts with its region's code ("APN2-", "EU-"), except in us-east-1.
_REGION_PREFIX = re.compile(r"^[A-Z]{2,3}[0-9]?-")

# The Pricing API states gp3 throughput per GiBps-month; our key is per MiB/s-month.
_PER_KEY_UNIT = {"GiBps-mo": 1024.0}

_S3_CLASSES = {
    "Standard": "STANDARD",
    "Standard - Infrequent Access": "STANDARD_IA",
    "One Zone - Infrequent Access": "ONEZONE_IA",
    "Intelligent-Tiering Frequent Access": "INTELLIGENT_TIERING",
    "Intelligent-Tiering Infrequent Access": "it-infrequent",
    "Intelligent-Tiering Archive Instant Access": "it-archive-instant",
    "Glacier Instant Retrieval": "GLACIER_IR",
    "Amazon Glacier": "GLACIER",
    "Glacier Flexible Retrieval": "GLACIER",
    "Glacier Deep Archive": "DEEP_ARCHIVE",
}


def _first_tier_usd(product: dict[str, Any]) -> float | None:
    """The on-demand price of the first tier (beginRange 0), in USD per unit of our key."""
    for term in product.get("terms", {}).get("OnDemand", {}).values():
        for dim in term.get("priceDimensions", {}).values():
            if dim.get("beginRange", "0") in ("0", "0.0"):
                usd = dim.get("pricePerUnit", {}).get("USD")
                if usd is None:
                    return None
                per = _PER_KEY_UNIT.get(dim.get("unit", ""))
                return round(float(usd) / per, 10) if per else float(usd)
    return None


def _instance_key(service: str, family: str, attrs: dict[str, Any]) -> str | None:
    """Hourly keys: EC2 Linux on-demand, RDS PostgreSQL Single-AZ, ElastiCache (Redis) nodes."""
    usage, instance = attrs.get("usagetype", ""), attrs.get("instanceType", "")
    if attrs.get("locationType", "AWS Region") != "AWS Region":  # Local Zones, Outposts, Wavelength
        return None
    if service == "AmazonEC2" and family == "Compute Instance" and "BoxUsage:" in usage:
        wanted = {"operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA",
                  "capacitystatus": "Used"}
        if all(attrs.get(k) == v for k, v in wanted.items()) and attrs.get("marketoption", "OnDemand") == "OnDemand":
            return f"ec2:{instance}:hour"
    if (service == "AmazonRDS" and family == "Database Instance" and "InstanceUsage:" in usage
            and attrs.get("databaseEngine") == "PostgreSQL" and attrs.get("deploymentOption") == "Single-AZ"):
        return f"rds:{instance}:hour"
    # A node type also lists Extended Support surcharges (APN2-ExtendedSupport...-NodeUsage:):
    # those are add-ons, never the node price.
    if (service == "AmazonElastiCache" and family == "Cache Instance" and "NodeUsage:" in usage
            and "ExtendedSupport" not in usage and attrs.get("cacheEngine", "Redis") == "Redis"):
        return f"elasticache:{instance}:hour"
    return None


def price_key(product: dict[str, Any]) -> str | None:
    """Our price-table key for one Pricing API product, or None if the rules do not use it."""
    family = product.get("product", {}).get("productFamily", "")
    attrs = product.get("product", {}).get("attributes", {})
    usage = attrs.get("usagetype", "")
    volume = attrs.get("volumeApiName", "")
    service = product.get("serviceCode", "")
    if service == "AmazonS3":
        cls = _S3_CLASSES.get(attrs.get("volumeType", ""))
        return f"s3:{cls}:gb" if family == "Storage" and cls and "TimedStorage" in usage else None
    if service == "AWSLambda":
        # Duration on demand only: not provisioned concurrency, not Lambda@Edge.
        arch = {"Lambda-GB-Second": "x86_64", "Lambda-GB-Second-ARM": "arm64"}.get(_REGION_PREFIX.sub("", usage))
        return f"lambda:{arch}:gb-second" if family == "Serverless" and arch else None
    if attrs.get("instanceType"):
        return _instance_key(service, family, attrs)
    if family == "NAT Gateway" and usage.endswith("NatGateway-Hours"):
        return "nat:hour"
    if family == "Storage" and volume and "VolumeUsage" in usage:
        return f"ebs:{volume}:gb"
    if family == "Storage Snapshot" and usage.endswith("SnapshotUsage"):
        return "snapshot:standard:gb"
    if family == "Storage Snapshot" and "SnapshotArchiveStorage" in usage:
        return "snapshot:archive:gb"
    if family == "System Operation" and volume in ("gp3", "io1", "io2") and "IOPS" in usage:
        return f"ebs:{volume}:iops"
    if family == "Provisioned Throughput" and volume == "gp3":
        return "ebs:gp3:throughput"
    if family == "IP Address" and "PublicIPv4:InUseAddress" in usage:
        return "ipv4:hour"
    return None


def parse_price_list(price_list: Iterable[str]) -> dict[str, dict[str, float]]:
    """GetProducts `PriceList` entries (JSON strings) -> region -> key -> USD."""
    table: dict[str, dict[str, float]] = {}
    for raw in price_list:
        product = json.loads(raw)
        key = price_key(product)
        region = product.get("product", {}).get("attributes", {}).get("regionCode")
        usd = _first_tier_usd(product)
        if key and region and usd:
            table.setdefault(region, {}).setdefault(key, usd)
    return table


@task(name="refresh-price-table", cache_policy=NO_CACHE)
@requires("pricing:GetProducts")
def refresh_price_table(account: Account, regions: Sequence[str]) -> PriceTable:
    """Current list prices for `regions`, over the bundled table; raises if the API is denied."""
    pricing = account.client("pricing", PRICING_REGION, PRICING_CONFIG)
    overrides: dict[str, dict[str, float]] = {}
    for region in regions:
        for service, family in QUERIES:
            filters = {"regionCode": region, "productFamily": family, **QUERY_FILTERS.get((service, family), {})}
            entries = paginate(pricing, "get_products", "PriceList", ServiceCode=service, Filters=[
                {"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in filters.items()
            ])
            for reg, prices in parse_price_list(entries).items():
                overrides.setdefault(reg, {}).update(prices)
    return BUNDLED.model_copy(update={"as_of": "AWS Pricing API", "overrides": overrides})


def refreshed_prices(targets: list[AwsTarget], policy: PricedPolicy,
                     ctx: RunContext) -> tuple[PriceTable, list[str]]:
    """The run's prices: the Pricing API's (kept in the store for a week, per job), else the bundle.

    Kept per job, not shared: each job's table is fetched with that job's credentials for the
    regions it reads. A kept table that lacks one of the run's regions is fetched again for both
    (two deployments of a job over other regions do not refetch each other's every run).
    """
    if not policy.refresh_prices:
        return BUNDLED, []
    regions = {t.region for t in targets}
    cached = ctx.store.get_watermark(ctx.job, PRICE_WATERMARK)
    entry = json.loads(cached) if cached else None
    if entry and ctx.now - datetime.fromisoformat(entry["fetched_at"]) < timedelta(days=PRICE_CACHE_DAYS):
        if regions <= set(entry.get("regions", ())):
            return PriceTable.model_validate(entry["table"]), []
        regions |= set(entry.get("regions", ()))
    try:
        table = refresh_price_table(targets[0].account, sorted(regions))
    except Exception as exc:  # no Pricing API access: the bundled list prices still hold
        return BUNDLED, [f"Bundled list prices used: Pricing API unavailable ({error_summary(exc)})"]
    ctx.store.set_watermark(ctx.job, PRICE_WATERMARK, json.dumps(
        {"fetched_at": ctx.now.isoformat(), "regions": sorted(regions), "table": table.model_dump()}), ctx.now)
    return table, []
