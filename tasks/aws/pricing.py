"""Refresh the bundled price table from the AWS Pricing API (GetProducts), when allowed.

Only the keys the cost rules use are read: EBS GB-month per volume type, provisioned IOPS and
throughput, snapshot GB-month, public IPv4 per hour, and S3 storage per class (first tier).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from botocore.config import Config
from prefect import task
from prefect.cache_policies import NO_CACHE

from rules.pricing import BUNDLED, PriceTable
from tasks.aws.clients import Account, paginate
from tasks.aws.permissions import requires

PRICING_REGION = "us-east-1"  # the Pricing API answers in us-east-1 (and two other regions)
# Prices are optional (the bundle stands in): a failing Pricing API costs two short attempts
# (at most 2 x 5 s when it never answers), not the adaptive retries' half minute.
PRICING_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=2, read_timeout=5)

# (service code, product family) pairs read per region.
QUERIES = (
    ("AmazonEC2", "Storage"),
    ("AmazonEC2", "Storage Snapshot"),
    ("AmazonEC2", "System Operation"),
    ("AmazonEC2", "Provisioned Throughput"),
    ("AmazonVPC", "IP Address"),
    ("AmazonS3", "Storage"),
)

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
    """The on-demand price of the first tier (beginRange 0), in USD."""
    for term in product.get("terms", {}).get("OnDemand", {}).values():
        for dim in term.get("priceDimensions", {}).values():
            if dim.get("beginRange", "0") in ("0", "0.0"):
                usd = dim.get("pricePerUnit", {}).get("USD")
                return float(usd) if usd is not None else None
    return None


def price_key(product: dict[str, Any]) -> str | None:
    """Our price-table key for one Pricing API product, or None if the rules do not use it."""
    family = product.get("product", {}).get("productFamily", "")
    attrs = product.get("product", {}).get("attributes", {})
    usage = attrs.get("usagetype", "")
    volume = attrs.get("volumeApiName", "")
    if product.get("serviceCode") == "AmazonS3":
        cls = _S3_CLASSES.get(attrs.get("volumeType", ""))
        return f"s3:{cls}:gb" if family == "Storage" and cls and "TimedStorage" in usage else None
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
            entries = paginate(pricing, "get_products", "PriceList", ServiceCode=service, Filters=[
                {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
                {"Type": "TERM_MATCH", "Field": "productFamily", "Value": family},
            ])
            for reg, prices in parse_price_list(entries).items():
                overrides.setdefault(reg, {}).update(prices)
    return BUNDLED.model_copy(update={"as_of": "AWS Pricing API", "overrides": overrides})
