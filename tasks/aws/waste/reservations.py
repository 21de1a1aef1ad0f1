"""Waste listers for commitments that end soon: Redshift reserved nodes, RDS reserved DB instances
(both regional) and Savings Plans (one account-wide API, read in `SAVINGS_PLANS_REGION`).

Each becomes a `Resource` whose facts carry its end and its own prices (count, hourly charges,
upfront payment, term), which `rules/waste.py` turns into a monthly commitment; nothing here acts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from rules.waste import Resource
from tasks.aws.clients import paginate
from tasks.aws.permissions import requires
from tasks.aws.waste.scan import Scan

# The Savings Plans API has one endpoint; its answer holds for every region of the account.
SAVINGS_PLANS_REGION = "us-east-1"


def _hourly(charges: Iterable[Mapping[str, Any]]) -> float:
    return sum(c.get("RecurringChargeAmount", 0.0) for c in charges if c.get("RecurringChargeFrequency") == "Hourly")


def _reservation(scan: Scan, id_: str, arn: str, what: str, r: Mapping[str, Any], count: int) -> Resource:
    start, term = r["StartTime"], r.get("Duration", 0)
    return Resource(
        id=id_, region=scan.region, arn=arn, created=start,
        facts={"what": what, "state": r.get("State", ""), "ends": (start + timedelta(seconds=term)).isoformat(),
               "offering_type": r.get("OfferingType", ""), "count": count,
               "hourly_usd": r.get("UsagePrice", 0.0) + _hourly(r.get("RecurringCharges", [])),
               "upfront_usd": r.get("FixedPrice", 0.0), "term_seconds": term})


@requires("redshift:DescribeReservedNodes")
def list_reserved_nodes(scan: Scan) -> list[Resource]:
    """The region's Redshift reserved nodes, every state (the rule keeps the active ones)."""
    return [_reservation(scan, n["ReservedNodeId"], "", f"{n.get('NodeCount', 1)} x {n.get('NodeType', '?')} "
                         "Redshift reservation", n, n.get("NodeCount", 1))
            for n in paginate(scan.client("redshift"), "describe_reserved_nodes", "ReservedNodes")]


@requires("rds:DescribeReservedDBInstances")
def list_reserved_db_instances(scan: Scan) -> list[Resource]:
    """The region's RDS reserved DB instances, every state (the rule keeps the active ones)."""
    resources = []
    for ri in paginate(scan.client("rds"), "describe_reserved_db_instances", "ReservedDBInstances"):
        count = ri.get("DBInstanceCount", 1)
        multi_az = " Multi-AZ" if ri.get("MultiAZ") else ""
        what = f"{count} x {ri.get('DBInstanceClass', '?')}{multi_az} {ri.get('ProductDescription', '')} RDS reservation"
        resources.append(_reservation(scan, ri["ReservedDBInstanceId"], ri.get("ReservedDBInstanceArn", ""),
                                      " ".join(what.split()), ri, count))
    return resources


@requires("savingsplans:DescribeSavingsPlans")
def list_savings_plans(scan: Scan) -> list[Resource]:
    """The account's active Savings Plans (with their tags); read in `SAVINGS_PLANS_REGION` only.

    The API has no botocore paginator: its `nextToken` is followed here."""
    client, plans, token = scan.client("savingsplans"), [], None
    while True:
        page = client.describe_savings_plans(states=["active"], **({"nextToken": token} if token else {}))
        plans += page.get("savingsPlans", [])
        token = page.get("nextToken")
        if not token:
            break
    resources = []
    for p in plans:
        start, end = datetime.fromisoformat(p["start"]), datetime.fromisoformat(p["end"])
        # `commitment` is the plan's whole hourly commitment, its upfront part included.
        hourly = float(p.get("commitment") or 0)
        kind = p.get("savingsPlanType", "")
        where = f" ({p['ec2InstanceFamily']} in {p['region']})" if p.get("ec2InstanceFamily") else ""
        resources.append(Resource(
            id=p["savingsPlanArn"], region=scan.region, arn=p["savingsPlanArn"], tags=p.get("tags") or {},
            created=start,
            facts={"what": f"${hourly:,.3f}/hour {kind} Savings Plan{where}", "state": p.get("state", ""),
                   "ends": end.isoformat(), "payment_option": p.get("paymentOption", ""),
                   "count": 1, "hourly_usd": hourly, "upfront_usd": 0.0, "term_seconds": 0}))
    return resources
