"""A local stand-in, for the tests, the bench and the demo: the reservation listings moto 5.2.5
lacks, answered with the documented response shapes.

moto implements none of the three APIs the reservation checks read:
- Redshift `DescribeReservedNodes` and RDS `DescribeReservedDBInstances` raise NotImplementedError.
  `reservations_answered` adds the two actions to moto's own Redshift and RDS responders: the
  records a test plants (the API reference's `ReservedNode` / `ReservedDBInstance` fields) go out
  through moto's serializer and its IAM check, so the client's request, parsing and paging, and a
  denial, are real. Every record comes back on one page (`MaxRecords` is not applied).
- Savings Plans `DescribeSavingsPlans`: moto has no Savings Plans service at all (HTTP 404 in
  process, 500 from a moto server). The one REST-JSON request is answered at moto's HTTP stub
  (in process) or in front of a moto server's WSGI app (the bench, the demo) with the documented body
  (`savingsPlans`, start and end as ISO strings, the commitment as a string), honouring the
  `states` filter. moto's IAM is not consulted there: `savingsplans:DescribeSavingsPlans` is
  declared and probed, but not proven under IAM enforcement.
moto must be running in this process (`mock_aws`, or a `ThreadedMotoServer`).
Everything else still goes to moto.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from moto.core.botocore_stubber import BotocoreStubber
from moto.core.responses import ActionResult
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.rds.responses import RDSResponse
from moto.redshift.responses import RedshiftResponse

SAVINGS_PLANS_HOST = "savingsplans.amazonaws.com"
YEAR, THREE_YEARS = 31_536_000, 94_608_000
ACCOUNT = "123456789012"


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

    def savings_plans(body: bytes | str | None) -> str:
        states = json.loads(body or b"{}").get("states")
        return json.dumps({"savingsPlans": [p for p in planted.savings_plans if not states or p["state"] in states]})

    process_request = BotocoreStubber.process_request
    serve = DomainDispatcherApplication.__call__

    def answer_savings_plans(stubber: BotocoreStubber, request: Any) -> Any:
        url = urlsplit(request.url)
        if url.hostname != SAVINGS_PLANS_HOST or url.path != "/DescribeSavingsPlans":
            return process_request(stubber, request)
        return 200, {"Content-Type": "application/json"}, savings_plans(request.body)

    def serve_savings_plans(app: DomainDispatcherApplication, environ: dict[str, Any], start_response: Any) -> Any:
        # A moto server learns the service from the signature's credential scope.
        if environ.get("PATH_INFO") != "/DescribeSavingsPlans" or "/savingsplans/" not in environ.get(
                "HTTP_AUTHORIZATION", ""):
            return serve(app, environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [savings_plans(body).encode()]

    RedshiftResponse.describe_reserved_nodes = describe_reserved_nodes
    RDSResponse.describe_reserved_db_instances = describe_reserved_db_instances
    BotocoreStubber.process_request = answer_savings_plans
    DomainDispatcherApplication.__call__ = serve_savings_plans
    try:
        yield planted
    finally:
        BotocoreStubber.process_request = process_request
        DomainDispatcherApplication.__call__ = serve
        del RedshiftResponse.describe_reserved_nodes, RDSResponse.describe_reserved_db_instances


# Records with every field of the API reference, ending `ends_in_days` after `now`.


def reserved_node(now: datetime, id_: str, ends_in_days: int, term: int = YEAR, state: str = "active") -> dict:
    return {"ReservedNodeId": id_, "ReservedNodeOfferingId": f"offer-{id_}", "NodeType": "ra3.4xlarge",
            "StartTime": now + timedelta(days=ends_in_days) - timedelta(seconds=term), "Duration": term,
            "FixedPrice": 10_000.0, "UsagePrice": 0.0, "CurrencyCode": "USD", "NodeCount": 2, "State": state,
            "OfferingType": "Partial Upfront", "ReservedNodeOfferingType": "Regular",
            "RecurringCharges": [{"RecurringChargeAmount": 0.5, "RecurringChargeFrequency": "Hourly"}]}


def reserved_db_instance(now: datetime, id_: str, ends_in_days: int, region: str = "us-east-1",
                         state: str = "active") -> dict:
    return {"ReservedDBInstanceId": id_, "ReservedDBInstancesOfferingId": f"offer-{id_}",
            "DBInstanceClass": "db.r6g.large", "StartTime": now + timedelta(days=ends_in_days, seconds=-THREE_YEARS),
            "Duration": THREE_YEARS, "FixedPrice": 3_000.0, "UsagePrice": 0.0, "CurrencyCode": "USD",
            "DBInstanceCount": 1, "ProductDescription": "postgresql", "OfferingType": "Partial Upfront",
            "MultiAZ": True, "State": state, "LeaseId": f"lease-{id_}",
            "RecurringCharges": [{"RecurringChargeAmount": 0.1, "RecurringChargeFrequency": "Hourly"}],
            "ReservedDBInstanceArn": f"arn:aws:rds:{region}:{ACCOUNT}:ri:{id_}"}


def savings_plan(now: datetime, id_: str, ends_in_days: int, state: str = "active", commitment: str = "2.5",
                 tags: dict | None = None) -> dict:
    def iso(t: datetime) -> str:
        return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    end = now + timedelta(days=ends_in_days)
    return {"offeringId": f"offer-{id_}", "savingsPlanId": id_,
            "savingsPlanArn": f"arn:aws:savingsplans::{ACCOUNT}:savingsplan/{id_}", "description": "3 year No Upfront",
            "start": iso(end - timedelta(seconds=THREE_YEARS)), "end": iso(end), "state": state, "region": "",
            "ec2InstanceFamily": "", "savingsPlanType": "Compute", "paymentOption": "No Upfront",
            "productTypes": ["EC2", "Fargate", "Lambda"], "currency": "USD", "commitment": commitment,
            "upfrontPaymentAmount": "0.0", "recurringPaymentAmount": commitment,
            "termDurationInSeconds": THREE_YEARS, "tags": tags or {}}
