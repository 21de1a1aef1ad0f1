"""waste-checks' reservation checks on moto: Redshift reserved nodes, RDS reserved DB instances and
Savings Plans that end within `reservation_expiry_days` (30), each priced at the monthly
commitment it holds.

moto lacks all three listings: `deployments/local_reservations.py` answers them with the documented
shapes (see there what is real and what is not). Planted: one expiring commitment of each kind,
and look-alikes that are not findings: one far from its end, one ending in 40 days, one already
retired, an expiring Savings Plan tagged to be kept.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import flows.waste_checks as waste_module
from deployments.iam import flow_actions
from deployments.local_reservations import (
    Planted,
    reserved_db_instance,
    reserved_node,
    savings_plan,
)
from flows.waste_checks import waste_checks
from rules.waste import WastePolicy
from tests.least_privilege import iam_user_with
from tests.waste.test_waste_flow import KEEP, creds  # noqa: F401 - a fixture

NOW = datetime.now(timezone.utc).replace(microsecond=0)
KINDS = ["expiring-redshift-reserved-node", "expiring-rds-reserved-instance", "expiring-savings-plan"]
ACCOUNT = "123456789012"


def plant(planted: Planted) -> dict[str, tuple[str, str, float]]:
    """-> resource id -> (region, kind, $/month) of the commitments that end within 30 days."""
    planted.reserved_nodes["us-east-1"] = [
        reserved_node(NOW, "rs-expiring", 10), reserved_node(NOW, "rs-renewed", 355),
        reserved_node(NOW, "rs-later", 40), reserved_node(NOW, "rs-retired", -5, state="retired")]
    planted.reserved_db_instances["eu-west-1"] = [
        reserved_db_instance(NOW, "pg-expiring", 5, "eu-west-1"), reserved_db_instance(NOW, "pg-fresh", 900, "eu-west-1"),
        reserved_db_instance(NOW, "pg-retired", -1, "eu-west-1", state="retired")]
    planted.savings_plans[:] = [
        savings_plan(NOW, "sp-expiring", 20), savings_plan(NOW, "sp-long", 300),
        savings_plan(NOW, "sp-kept", 3, tags={KEEP["Key"]: "yes"}), savings_plan(NOW, "sp-retired", -30, state="retired")]
    return {
        # 2 nodes x ($0.50 x 730 + $10,000 over a 1-year term: 10,000 x 730 x 3600 / 31,536,000 = $833.33)
        "rs-expiring": ("us-east-1", "expiring-redshift-reserved-node", 2 * (0.5 * 730 + 10_000 / 12)),
        # 1 instance x ($0.10 x 730 + $3,000 over 3 years = $83.33 a month)
        "pg-expiring": ("eu-west-1", "expiring-rds-reserved-instance", 0.1 * 730 + 3_000 / 36),
        # $2.50 an hour committed x 730
        f"arn:aws:savingsplans::{ACCOUNT}:savingsplan/sp-expiring": ("us-east-1", "expiring-savings-plan", 1825.0),
    }


def test_commitments_ending_within_30_days_at_their_monthly_commitment(creds, store, reservations):  # noqa: F811
    expected = plant(reservations)
    result = waste_checks(policy=WastePolicy(checks=KINDS), regions=["us-east-1", "eu-west-1"], aws_credentials=creds,
                          store=store._block_document_name, now=NOW)
    assert result.errors == {}
    # Savings Plans are account-wide: reported once, in us-east-1, whatever else is scanned.
    found = {f.resource_id: (f.scope.split("/")[1], f.kind, f.monthly_cost_usd) for f in result.findings}
    assert found == {k: (region, kind, pytest.approx(usd, abs=1e-4)) for k, (region, kind, usd) in expected.items()}
    reasons = {f.resource_id.rsplit("/", 1)[-1]: f.reason for f in result.findings}
    ends = {days: f"{NOW + timedelta(days=days):%Y-%m-%d}" for days in (5, 10, 20)}
    assert reasons == {
        "rs-expiring": f"2 x ra3.4xlarge Redshift reservation ends in 10 days ({ends[10]}); from then on the usage "
                       "it covers bills at on-demand prices unless it is renewed",
        "pg-expiring": f"1 x db.r6g.large Multi-AZ postgresql RDS reservation ends in 5 days ({ends[5]}); from then "
                       "on the usage it covers bills at on-demand prices unless it is renewed",
        "sp-expiring": f"$2.500/hour Compute Savings Plan ends in 20 days ({ends[20]}); from then on the usage it "
                       "covers bills at on-demand prices unless it is renewed",
    }
    assert not any(f.numbers.get("price_estimated") for f in result.findings)  # the reservation's own price
    assert result.offers == []  # nothing to act on: renewing is a purchase, a person's decision

    # A longer window finds the one ending in 40 days too.
    wider = waste_checks(policy=WastePolicy(checks=KINDS, reservation_expiry_days=45), regions=["us-east-1"],
                         aws_credentials=creds, store=store._block_document_name, now=NOW)
    assert {f.resource_id for f in wider.findings} == {
        "rs-expiring", "rs-later", f"arn:aws:savingsplans::{ACCOUNT}:savingsplan/sp-expiring"}


def test_reservation_reads_need_their_permissions(creds, store, reservations):  # noqa: F811
    plant(reservations)
    read = flow_actions(waste_module, read_only=True)
    assert {"redshift:DescribeReservedNodes", "rds:DescribeReservedDBInstances",
            "savingsplans:DescribeSavingsPlans"} <= read
    denied = "redshift:DescribeReservedNodes"
    with iam_user_with(read - {denied}) as limited:
        result = waste_checks(policy=WastePolicy(checks=KINDS), regions=["us-east-1", "eu-west-1"],
                              aws_credentials=limited, store=store._block_document_name, now=NOW)
    # Denied in each region it was asked in (moto's IAM check); the other checks still report.
    assert set(result.errors) == {f"{ACCOUNT}/{r} expiring-redshift-reserved-node" for r in ("us-east-1", "eu-west-1")}
    assert all(f"not authorized to perform: {denied}" in why for why in result.errors.values())
    assert {f.resource_id.rsplit("/", 1)[-1] for f in result.findings} == {"pg-expiring", "sp-expiring"}
