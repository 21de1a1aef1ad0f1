"""Object age per (bucket, prefix): one task run per account, a page budget shared by all buckets.

A bucket with an S3 Inventory report (CSV, with size and last-modified columns) is
read from its newest report instead of listing every key. Objects are tallied as they stream
(`rules.idle.ObjectTally`), so memory stays flat however many keys a bucket holds; a bucket
that cannot be read is reported and the others go on.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import ClientError
from prefect import task
from prefect.cache_policies import NO_CACHE

from rules.idle import ObjectTally, S3Target
from tasks.aws.clients import Account, PageCounter, error_summary, paginate
from tasks.aws.permissions import requires
from tasks.aws.s3 import iter_objects

INVENTORY_FIELDS = {"Size", "LastModifiedDate"}


def inventory_location(s3: Any, bucket: str, prefix: str) -> tuple[str, str] | None:
    """(destination bucket, key prefix of the reports) of an inventory covering `prefix`."""
    try:
        configs = s3.list_bucket_inventory_configurations(Bucket=bucket).get("InventoryConfigurationList", [])
    except ClientError:  # not allowed to read it: listing still works
        return None
    for config in configs:
        dest = config["Destination"]["S3BucketDestination"]
        if (config.get("IsEnabled") and dest.get("Format") == "CSV"
                and prefix.startswith(config.get("Filter", {}).get("Prefix", ""))):
            base = "/".join(p for p in (dest.get("Prefix", "").strip("/"), bucket, config["Id"]) if p)
            return dest["Bucket"].split(":::")[-1], base + "/"
    return None


def _latest_manifest(s3: Any, dest_bucket: str, base: str) -> tuple[str, dict[str, Any]] | None:
    """The newest delivered report: folders are named like `2026-11-24T01-00Z/`."""
    folders = [p["Prefix"] for p in paginate(s3, "list_objects_v2", "CommonPrefixes",
                                             Bucket=dest_bucket, Prefix=base, Delimiter="/")]
    for folder in sorted((f for f in folders if f[len(base):][:4].isdigit()), reverse=True):
        try:
            body = s3.get_object(Bucket=dest_bucket, Key=folder + "manifest.json")["Body"].read()
        except ClientError:
            continue
        return folder[len(base):].rstrip("/"), json.loads(body)
    return None


def tally_inventory(s3: Any, tally: ObjectTally, dest_bucket: str, base: str, now: datetime) -> bool:
    """Tally from the newest inventory report; False if none was delivered yet or it lacks the
    size or last-modified column (then the caller lists the bucket)."""
    found = _latest_manifest(s3, dest_bucket, base)
    if found is None:
        return False
    delivered, manifest = found
    columns = [c.strip() for c in manifest["fileSchema"].split(",")]
    if not INVENTORY_FIELDS <= set(columns):
        return False
    for file in manifest["files"]:
        raw = s3.get_object(Bucket=dest_bucket, Key=file["key"])["Body"]
        with gzip.open(raw, "rt", newline="") as rows:
            for row in csv.reader(rows):
                record = dict(zip(columns, row, strict=False))
                # Reports of all versions: only the current version of a live object counts.
                if (not unquote(record.get("Key", "")).startswith(tally.prefix)
                        or record.get("IsLatest", "true") != "true"
                        or record.get("IsDeleteMarker", "false") == "true"):
                    continue
                modified = datetime.fromisoformat(record["LastModifiedDate"].replace("Z", "+00:00"))
                tally.add(int(record["Size"] or 0), modified, record.get("StorageClass") or "STANDARD", now)
        tally.pages += 1
    tally.source = f"inventory {delivered}"
    return True


@task(name="scan-object-age", cache_policy=NO_CACHE)
@requires("s3:ListBucket", "s3:GetInventoryConfiguration", "s3:GetObject")
def scan_object_age(account: Account, targets: Sequence[S3Target], max_pages: int,
                    now: datetime) -> tuple[list[ObjectTally], dict[str, str]]:
    """Tally objects older than each target's age, from an inventory report when the bucket has
    one, else by listing, stopping at `max_pages` list pages in total."""
    tallies: list[ObjectTally] = []
    errors: dict[str, str] = {}
    budget = max_pages
    for target in targets:
        tally = ObjectTally(target.bucket, target.region, target.prefix, target.max_age_days)
        try:
            s3 = account.client("s3", target.region)
            location = inventory_location(s3, target.bucket, target.prefix)
            if location is None or not tally_inventory(s3, tally, *location, now):
                counter = PageCounter()
                for obj in iter_objects(account, target.bucket, target.region, target.prefix,
                                        counter=counter, max_pages=budget):
                    tally.add(obj["Size"], obj["LastModified"], obj.get("StorageClass", "STANDARD"), now)
                tally.pages, tally.truncated = counter.pages, counter.truncated or budget == 0
                budget = max(0, budget - counter.pages)
        except Exception as exc:  # one unreadable bucket must not hide the others
            errors[f"s3://{target.bucket}"] = error_summary(exc)
            continue
        tallies.append(tally)
    return tallies, errors
