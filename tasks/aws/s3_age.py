"""Object age per (bucket, prefix): one task run per account, a page budget shared by all buckets.

Objects are tallied while paging (`rules.idle.ObjectTally`), so memory stays flat however many
keys a bucket holds; a bucket that cannot be read is reported and the others go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from rules.idle import ObjectTally, S3Target
from tasks.aws.clients import Account, PageCounter, error_summary
from tasks.aws.permissions import requires
from tasks.aws.s3 import iter_objects


@task(name="scan-object-age", cache_policy=NO_CACHE)
@requires("s3:ListBucket")
def scan_object_age(account: Account, targets: Sequence[S3Target], max_pages: int,
                    now: datetime) -> tuple[list[ObjectTally], dict[str, str]]:
    """Tally objects older than each target's age; stop at `max_pages` pages in total."""
    tallies: list[ObjectTally] = []
    errors: dict[str, str] = {}
    budget = max_pages
    for target in targets:
        tally = ObjectTally(target.bucket, target.region, target.prefix, target.max_age_days)
        counter = PageCounter()
        try:
            for obj in iter_objects(account, target.bucket, target.region, target.prefix,
                                    counter=counter, max_pages=budget):
                tally.add(obj["Size"], obj["LastModified"], obj.get("StorageClass", "STANDARD"), now)
        except Exception as exc:  # one unreadable bucket must not hide the others
            errors[f"s3://{target.bucket}"] = error_summary(exc)
            continue
        tally.pages, tally.truncated = counter.pages, counter.truncated or budget == 0
        budget = max(0, budget - counter.pages)
        tallies.append(tally)
    return tallies, errors
