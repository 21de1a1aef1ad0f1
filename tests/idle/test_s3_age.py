"""S3 object age on moto: listing under a page budget, and reading an S3 Inventory report.

The inventory report (manifest.json + gzipped CSV) is written here in the layout and format S3
delivers (moto stores inventory configurations but never delivers reports).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import datetime, timedelta, timezone

import boto3
from prefect_aws import AwsCredentials

from rules.idle import S3Target
from tasks.aws.clients import Account
from tasks.aws.s3_age import scan_object_age

NOW = datetime.now(timezone.utc) + timedelta(days=40)


def test_listing_stops_at_the_page_budget_and_says_so(aws):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="many-keys")
    for i in range(2500):
        s3.put_object(Bucket="many-keys", Key=f"tmp/{i:05d}", Body=b"")
    s3.create_bucket(Bucket="second")
    s3.put_object(Bucket="second", Key="tmp/a", Body=b"x")
    account = Account(AwsCredentials(region_name="us-east-1"))
    targets = [S3Target("many-keys", "us-east-1", "tmp/", 30), S3Target("second", "us-east-1", "tmp/", 30),
               S3Target("missing-bucket", "us-east-1", "tmp/", 30)]
    tallies, errors = scan_object_age.fn(account, targets, 2, NOW)
    first, second = tallies
    assert (first.objects, first.pages, first.truncated) == (2000, 2, True)
    assert second.truncated and second.objects == 0  # the budget was spent on the first bucket
    assert list(errors) == ["s3://missing-bucket"] and errors["s3://missing-bucket"].startswith("NoSuchBucket")


def _gz_csv(rows: list[list[str]]) -> bytes:
    text = io.StringIO()
    csv.writer(text, quoting=csv.QUOTE_ALL).writerows(rows)
    return gzip.compress(text.getvalue().encode())


def test_inventory_report_is_read_instead_of_listing(aws):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="big-lake")
    s3.create_bucket(Bucket="inventory-reports")
    s3.put_bucket_inventory_configuration(Bucket="big-lake", Id="daily", InventoryConfiguration={
        "Id": "daily", "IsEnabled": True, "IncludedObjectVersions": "All",
        "Destination": {"S3BucketDestination": {"Bucket": "arn:aws:s3:::inventory-reports",
                                                "Format": "CSV", "Prefix": "inv"}},
        "Schedule": {"Frequency": "Daily"}, "OptionalFields": ["Size", "LastModifiedDate", "StorageClass"]})
    old = (NOW - timedelta(days=45)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    young = (NOW - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    # A report of all versions: the non-current version and the delete marker do not count.
    rows = [["big-lake", "tmp/a%20b.parquet", "v1", "true", "false", str(5 * 1024**3), old, "STANDARD"],
            ["big-lake", "tmp/a%20b.parquet", "v0", "false", "false", str(7 * 1024**3), old, "STANDARD"],
            ["big-lake", "tmp/gone.parquet", "v2", "true", "true", "", old, ""],
            ["big-lake", "tmp/c.parquet", "v1", "true", "false", str(1024**3), old, "GLACIER"],
            ["big-lake", "tmp/d.parquet", "v1", "true", "false", str(1024**3), young, "STANDARD"],
            ["big-lake", "keep/e.parquet", "v1", "true", "false", str(1024**3), old, "STANDARD"]]
    base = "inv/big-lake/daily"
    s3.put_object(Bucket="inventory-reports", Key=f"{base}/data/part-1.csv.gz", Body=_gz_csv(rows))
    for day, files in (("2026-11-23T01-00Z", []), ("2026-11-24T01-00Z", [f"{base}/data/part-1.csv.gz"])):
        s3.put_object(Bucket="inventory-reports", Key=f"{base}/{day}/manifest.json", Body=json.dumps({
            "sourceBucket": "big-lake", "destinationBucket": "arn:aws:s3:::inventory-reports",
            "fileFormat": "CSV", "fileSchema": "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, StorageClass",
            "files": [{"key": k, "size": 100, "MD5checksum": "x"} for k in files]}))
    s3.put_object(Bucket="big-lake", Key="tmp/listed-only", Body=b"x")  # not in the report

    account = Account(AwsCredentials(region_name="us-east-1"))
    [tally], errors = scan_object_age.fn(account, [S3Target("big-lake", "us-east-1", "tmp/", 30)], 10, NOW)
    assert errors == {}
    assert tally.source == "inventory 2026-11-24T01-00Z"
    assert tally.objects == 2 and tally.bytes_by_class == {"STANDARD": 5 * 1024**3, "GLACIER": 1024**3}
