"""Small flows for testing the alert backbone (not part of the collection)."""

from __future__ import annotations

from datetime import datetime, timezone

from prefect import flow, get_run_logger, task
from pydantic import BaseModel

from blocks.store import load_store
from rules.findings import Coverage, Finding, Severity
from tasks.notify import on_flow_failure
from tasks.tell import tell


@task
def load_orders(batch: int) -> None:
    get_run_logger().info("loading batch %s of orders", batch)
    raise RuntimeError(f"upstream table orders_{batch} is missing")


@flow(name="backbone-failing", on_failure=[on_flow_failure])
def failing_job(batch: int = 7) -> None:
    get_run_logger().info("starting the nightly load")
    load_orders(batch)


class PlantedPolicy(BaseModel):
    min_cost_usd: float = 1.0


@flow(name="backbone-findings", on_failure=[on_flow_failure])
def findings_job(resources: list[str], store: str, severity: str = "warning",
                 policy: PlantedPolicy | None = None) -> None:
    ops_store = load_store(store)
    found = [Finding(kind="planted", resource_id=r, scope="test", severity=Severity(severity),
                     reason=f"{r} was planted", monthly_cost_usd=1.5) for r in resources]
    tell("backbone-findings", found, ops_store, datetime.now(timezone.utc), Coverage({"test"}), policy=policy)
