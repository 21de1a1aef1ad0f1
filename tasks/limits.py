"""How many of our readers one AWS account or one warehouse sees at once, across every run and
worker: Prefect global concurrency limits, one per account and one per warehouse.

A limit is created with its default the first time a run needs it; after that it is the
operator's (Prefect UI: Concurrency, or `prefect gcl update NAME --limit N`) and is never
overwritten here. A run waiting longer than `SLOT_WAIT_SECONDS` for a slot gives up on that
target, which then counts as not read (its findings stay open).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

# Regions of one account read at once: under the API rate limits AWS applies per account.
AWS_ACCOUNT_SLOTS = 8
# Connections to one warehouse at once (query-watch, redshift-health, data-integrity together).
WAREHOUSE_SLOTS = 4
SLOT_WAIT_SECONDS = 600

_BANNED = re.compile(r"[/%&<>]")  # characters Prefect refuses in a limit's name


def limit_name(kind: str, key: str) -> str:
    """`aws-account`, `123456789012` -> `dataplatform-ops:aws-account:123456789012`."""
    return _BANNED.sub("_", f"dataplatform-ops:{kind}:{key}")


def ensure_limit(name: str, default: int) -> int:
    """The limit's current size, creating it with `default` slots if it does not exist yet."""
    with get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(name).limit
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=default))
            return default
        except ObjectAlreadyExists:  # another run created it meanwhile
            return client.read_global_concurrency_limit_by_name(name).limit


@contextmanager
def slots(kind: str, key: str, default: int, want: int = 1) -> Iterator[int]:
    """Hold up to `want` slots of the limit for (`kind`, `key`); yields how many were granted
    (fewer when an operator set the limit lower). `TimeoutError` after `SLOT_WAIT_SECONDS`."""
    name = limit_name(kind, key)
    granted = max(1, min(want, ensure_limit(name, default)))
    with concurrency(name, occupy=granted, timeout_seconds=SLOT_WAIT_SECONDS, strict=True):
        yield granted


def aws_account_slot(account_id: str) -> AbstractContextManager[int]:
    """One of the account's `AWS_ACCOUNT_SLOTS`, for reading one region (or the account-wide part)."""
    return slots("aws-account", account_id, AWS_ACCOUNT_SLOTS)


def warehouse_slots(scope: str, want: int = 1) -> AbstractContextManager[int]:
    """Up to `want` of the warehouse's `WAREHOUSE_SLOTS` connections."""
    return slots("warehouse", scope, WAREHOUSE_SLOTS, want)
