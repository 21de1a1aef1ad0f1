"""dev-parking: stop tagged dev EC2, RDS and Aurora outside business hours; start them again."""

from __future__ import annotations

from datetime import datetime, timezone

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect_aws import AwsCredentials

from blocks.loading import load_block
from blocks.store import OpsStore, load_store
from rules.parking import Memory, ParkingPlan, ParkingPolicy, memory_key, plan_parking, plan_rows
from rules.pricing import BUNDLED
from tasks.aws.clients import Account, error_summary
from tasks.aws.compute import list_db_clusters, list_db_instances, park_resources, parkables
from tasks.aws.ec2 import list_instances
from tasks.calendars import load_calendars
from tasks.notify import on_flow_failure
from tasks.report import artifact_key
from tasks.tell import tell

JOB = "dev-parking"


@task(name="recall-parking")
def recall(store: OpsStore, keys: list[str]) -> dict[str, Memory]:
    """The transition last acted on (or observed) per resource."""
    found = {}
    for key in keys:
        value = store.get_watermark(JOB, key)
        if value:
            found[key] = Memory.loads(value)
    return found


@task(name="remember-observed")
def remember_observed(store: OpsStore, plan: ParkingPlan, now: datetime) -> None:
    """Resources already in the state a transition wants: remember it so a later manual
    start/stop inside the same period is left alone."""
    for item in plan.items:
        if item.remember and not item.action:
            store.set_watermark(JOB, memory_key(item.resource), item.remember.dumps(), now)


@flow(name=JOB, on_failure=[on_flow_failure])
def dev_parking(
    policy: ParkingPolicy = ParkingPolicy(),  # noqa: B008 - a pydantic default, rendered as a form
    regions: list[str] = ["us-east-1"],  # noqa: B006 - Prefect parameters are copied per run
    aws_credentials: str = "aws",
    store: str = "ops-store",
    calendars_dir: str = "calendars",
    apply: bool = False,
    now: datetime | None = None,
) -> ParkingPlan:
    """Park resources tagged `dataplatform-ops:schedule` (or whose environment tag has a
    default schedule) on each schedule transition. Dry-run unless `apply=True`."""
    ops_store = load_store(store)
    account = Account(load_block(AwsCredentials, aws_credentials, "aws_credentials"))
    calendars = load_calendars(calendars_dir)
    now = now or datetime.now(timezone.utc)

    resources, errors = [], {}
    for region in regions:
        try:
            resources += parkables(list_instances(account, region), list_db_instances(account, region),
                                   list_db_clusters(account, region))
        except Exception as exc:  # one region failing does not sink the others
            errors[region] = error_summary(exc)

    memory = recall(ops_store, [memory_key(r) for r in resources])
    plan = plan_parking(resources, policy, now, memory, calendars, BUNDLED)

    outcomes: dict[str, str] = {}
    for region in sorted({i.resource.region for i in plan.actions}):
        todo = [i for i in plan.actions if i.resource.region == region]
        outcomes |= park_resources(account, region, todo, ops_store, JOB, now, apply)
    remember_observed(ops_store, plan, now)

    create_table_artifact(key=artifact_key(JOB, "plan"), table=plan_rows(plan.items, outcomes),
                          description=f"{JOB}: schedule, action, hours parked and $ saved per resource")
    saved = sum(i.saved_month_usd or 0 for i in plan.items)
    notes = [f"{len(plan.items)} scheduled resources, {len(plan.actions)} "
             f"{'actions' if apply else 'planned actions (dry run)'}; parking saves ${saved:,.2f}/month"]
    tell(JOB, plan.findings, ops_store, now, errors=errors, notes=notes)
    return plan
