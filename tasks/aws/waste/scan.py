"""What a waste lister is given: one account x region, the policy, the run's time, and a memo so
checks that need the same listing (instances, volumes) read it once per target."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rules.waste import Resource, WastePolicy
from tasks.aws.clients import Account
from tasks.aws.s3 import Bucket


@dataclass
class Listing:
    """Resources read, with the parts that could not be read: (error, resource-id prefix)."""

    resources: list[Resource]
    gaps: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Scan:
    account: Account
    region: str
    policy: WastePolicy
    now: datetime
    buckets: list[Bucket] | None = None  # the account's buckets in this region; None: not read
    _memo: dict[Any, Any] = field(default_factory=dict, repr=False)

    def client(self, service: str) -> Any:
        return self.account.client(service, self.region)

    def once(self, read: Callable[..., Any], *args: Any) -> Any:
        """`read(self, *args)`, called at most once per target; a failure is remembered too."""
        key = (read, args)
        if key not in self._memo:
            try:
                self._memo[key] = (read(self, *args), None)
            except Exception as exc:  # re-raised for every check that needs this listing
                self._memo[key] = (None, exc)
        value, error = self._memo[key]
        if error is not None:
            raise error
        return value
