"""The reservation listings moto 5.2.5 lacks, answered with the documented response shapes.

moto implements none of the three APIs the reservation checks read:
- Redshift `DescribeReservedNodes` and RDS `DescribeReservedDBInstances` raise NotImplementedError.
  `reservations_answered` adds the two actions to moto's own Redshift and RDS responders: the
  records a test plants (the API reference's `ReservedNode` / `ReservedDBInstance` fields) go out
  through moto's serializer and its IAM check, so the client's request, parsing and paging, and a
  denial, are real. Every record comes back on one page (`MaxRecords` is not applied).
- Savings Plans `DescribeSavingsPlans`: moto has no Savings Plans service at all (HTTP 404).
  The one REST-JSON request is answered at moto's HTTP stub with the documented body
  (`savingsPlans`, start and end as ISO strings, the commitment as a string), honouring the
  `states` filter. moto's IAM is not consulted there: `savingsplans:DescribeSavingsPlans` is
  declared and probed, but not proven under IAM enforcement.
Everything else still goes to moto.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from moto.core.botocore_stubber import BotocoreStubber
from moto.core.responses import ActionResult
from moto.rds.responses import RDSResponse
from moto.redshift.responses import RedshiftResponse

SAVINGS_PLANS_HOST = "savingsplans.amazonaws.com"


@dataclass
class Planted:
    """What the unimplemented listings answer: records per region, and the account's Savings Plans."""

    reserved_nodes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    reserved_db_instances: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    savings_plans: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def reservations_answered() -> Iterator[Planted]:
    """While inside, the three listings answer what is planted in the yielded `Planted`."""
    planted = Planted()

    def describe_reserved_nodes(self: RedshiftResponse) -> ActionResult:
        return ActionResult({"ReservedNodes": planted.reserved_nodes.get(self.region, [])})

    def describe_reserved_db_instances(self: RDSResponse) -> ActionResult:
        return ActionResult({"ReservedDBInstances": planted.reserved_db_instances.get(self.region, [])})

    process_request = BotocoreStubber.process_request

    def answer_savings_plans(stubber: BotocoreStubber, request: Any) -> Any:
        url = urlsplit(request.url)
        if url.hostname != SAVINGS_PLANS_HOST or url.path != "/DescribeSavingsPlans":
            return process_request(stubber, request)
        states = json.loads(request.body or b"{}").get("states")
        plans = [p for p in planted.savings_plans if not states or p["state"] in states]
        return 200, {"Content-Type": "application/json"}, json.dumps({"savingsPlans": plans})

    RedshiftResponse.describe_reserved_nodes = describe_reserved_nodes
    RDSResponse.describe_reserved_db_instances = describe_reserved_db_instances
    BotocoreStubber.process_request = answer_savings_plans
    try:
        yield planted
    finally:
        BotocoreStubber.process_request = process_request
        del RedshiftResponse.describe_reserved_nodes, RDSResponse.describe_reserved_db_instances
