"""Price table refresh from the AWS Pricing API.

moto does not implement the Pricing API ("Not yet implemented"), so GetProducts is answered by
botocore's Stubber, which validates our request parameters against the real service model. The
response entries below reproduce the structure of real GetProducts `PriceList` items (field
names, nesting, SKU/rate-code layout, string-encoded prices) for eu-west-1; they were written
from AWS's published format, not captured live (this machine has no AWS access).
"""

from __future__ import annotations

import json

import pytest
from botocore.stub import ANY, Stubber
from prefect_aws import AwsCredentials

from rules.pricing import ebs_volume_monthly, public_ipv4_monthly, s3_monthly
from tasks.aws.clients import Account
from tasks.aws.pricing import QUERIES, parse_price_list, refresh_price_table


def _product(service: str, family: str, attributes: dict, usd: str, unit: str, begin: str = "0") -> str:
    sku = "ABCD1234EFGH5678"
    return json.dumps({
        "product": {"productFamily": family, "attributes": {
            "regionCode": "eu-west-1", "location": "EU (Ireland)", "locationType": "AWS Region",
            "servicecode": service, **attributes}, "sku": sku},
        "serviceCode": service,
        "terms": {"OnDemand": {f"{sku}.JRTCKXETXF": {
            "priceDimensions": {f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                "unit": unit, "endRange": "Inf", "description": f"{usd} per {unit}", "appliesTo": [],
                "rateCode": f"{sku}.JRTCKXETXF.6YS6EN2CT7", "beginRange": begin,
                "pricePerUnit": {"USD": usd}}},
            "sku": sku, "effectiveDate": "2026-11-01T00:00:00Z", "offerTermCode": "JRTCKXETXF",
            "termAttributes": {}}}},
        "version": "20261101000000", "publicationDate": "2026-11-01T00:00:00Z",
    })


RECORDED = {
    ("AmazonEC2", "Storage"): [
        _product("AmazonEC2", "Storage", {"volumeApiName": "gp3", "usagetype": "EU-EBS:VolumeUsage.gp3",
                                          "storageMedia": "SSD-backed", "volumeType": "General Purpose"},
                 "0.0880000000", "GB-Mo"),
        _product("AmazonEC2", "Storage", {"volumeApiName": "gp2", "usagetype": "EU-EBS:VolumeUsage.gp2"},
                 "0.1100000000", "GB-Mo"),
    ],
    ("AmazonEC2", "Storage Snapshot"): [
        _product("AmazonEC2", "Storage Snapshot", {"usagetype": "EU-EBS:SnapshotUsage",
                                                   "storageMedia": "Amazon S3"}, "0.0500000000", "GB-Mo"),
    ],
    ("AmazonEC2", "System Operation"): [
        _product("AmazonEC2", "System Operation", {"volumeApiName": "gp3", "group": "EBS IOPS",
                                                   "usagetype": "EU-EBS:VolumeP-IOPS.gp3"},
                 "0.0055000000", "IOPS-Mo"),
    ],
    ("AmazonEC2", "Provisioned Throughput"): [
        _product("AmazonEC2", "Provisioned Throughput", {"volumeApiName": "gp3", "group": "EBS Throughput",
                                                         "usagetype": "EU-EBS:VolumeP-Throughput.gp3"},
                 "45.0560000000", "GiBps-mo"),  # the API's unit: 0.044 per MiB/s-month x 1024
    ],
    ("AmazonVPC", "IP Address"): [
        _product("AmazonVPC", "IP Address", {"group": "VPCPublicIPv4Address",
                                             "usagetype": "EU-PublicIPv4:InUseAddress"}, "0.0050000000", "Hrs"),
    ],
    ("AmazonS3", "Storage"): [
        _product("AmazonS3", "Storage", {"volumeType": "Standard", "storageClass": "General Purpose",
                                         "usagetype": "EU-TimedStorage-ByteHrs"}, "0.0230000000", "GB-Mo"),
        # A higher tier of the same class: the first tier (beginRange 0) is the one kept.
        _product("AmazonS3", "Storage", {"volumeType": "Standard", "usagetype": "EU-TimedStorage-ByteHrs"},
                 "0.0220000000", "GB-Mo", begin="51200"),
        _product("AmazonS3", "Storage", {"volumeType": "Standard - Infrequent Access",
                                         "usagetype": "EU-TimedStorage-SIA-ByteHrs"}, "0.0125000000", "GB-Mo"),
    ],
}


def test_parser_maps_products_to_price_keys():
    parsed = parse_price_list(entry for entries in RECORDED.values() for entry in entries)
    assert parsed == {"eu-west-1": {
        "ebs:gp3:gb": 0.088, "ebs:gp2:gb": 0.11, "snapshot:standard:gb": 0.05, "ebs:gp3:iops": 0.0055,
        "ebs:gp3:throughput": 0.044, "ipv4:hour": 0.005, "s3:STANDARD:gb": 0.023, "s3:STANDARD_IA:gb": 0.0125,
    }}


def test_refresh_task_queries_every_family_and_overrides_the_bundle(monkeypatch):
    account = Account(AwsCredentials(region_name="us-east-1"))
    pricing = account.client("pricing", "us-east-1")
    stubber = Stubber(pricing)
    for service, family in QUERIES:
        # Instance, NAT and Lambda families answer empty here; tests/test_pricing_seoul.py reads them.
        entries = RECORDED.get((service, family), [])
        stubber.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": entries},
                             {"ServiceCode": service, "Filters": ANY})
    monkeypatch.setattr(account, "client", lambda service, region=None, config=None: pricing)
    with stubber:
        table = refresh_price_table.fn(account, ["eu-west-1"])
        stubber.assert_no_pending_responses()
    assert table.as_of == "AWS Pricing API"
    assert ebs_volume_monthly(table, "eu-west-1", "gp3", 100, 4000, 250).usd == pytest.approx(
        100 * 0.088 + 1000 * 0.0055 + 125 * 0.044)
    assert public_ipv4_monthly(table, "eu-west-1").usd == pytest.approx(3.65)
    assert s3_monthly(table, "eu-west-1", "STANDARD", 1024**3).usd == pytest.approx(0.023)
