"""dev-parking: stop tagged dev EC2, RDS and Aurora outside business hours; start them again.

A schedule is approved once: the first `apply` run that meets a resource's schedule (or a
changed one) asks through the approval path; from then on each transition of that approved
schedule is acted on without a click, until the tag changes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect.artifacts import create_table_artifact
from prefect_aws import AwsCredentials

from blocks.store import OpsStore
from rules.parking import Memory, ParkingPolicy, memory_key, plan_parking, plan_rows
from tasks.approval import Offer
from tasks.aws.compute import list_db_clusters, list_db_instances, park_resources, parkables
from tasks.aws.ec2 import list_instances
from tasks.calendars import load_calendars
from tasks.report import artifact_key
from tasks.runner import Action, AwsTarget, Job, Judgement, RunContext, RunResult, job_flow, run_aws

JOB = "dev-parking"


def collect(target: AwsTarget, policy: ParkingPolicy, ctx: RunContext) -> tuple[list, dict[str, Memory]]:
    """The parkable resources, and the transition last acted on (or observed) for each."""
    account, region = target.account, target.region
    resources = parkables(list_instances(account, region), list_db_instances(account, region),
                          list_db_clusters(account, region))
    memory = {}
    for r in resources:
        value = ctx.store.get_watermark(JOB, memory_key(r))
        if value:
            memory[memory_key(r)] = Memory.loads(value)
    return resources, memory


def judge(target: AwsTarget, read: tuple, policy: ParkingPolicy, ctx: RunContext) -> Judgement:
    resources, memory = read
    plan = plan_parking(resources, policy, ctx.now, memory, ctx.options["calendars"], ctx.prices)
    offers = [Offer(i.resource.resource_id, target.scope, i.action, i.saved_month_usd or 0.0, i.reason,
                    payload=i) for i in plan.actions]
    return Judgement(findings=plan.findings, offers=offers, details=plan.items)


def _approved_key(offer: Offer) -> str:
    return "approved-schedule:" + memory_key(offer.payload.resource)


def schedule_approved(offer: Offer, ctx: RunContext) -> bool:
    return ctx.store.get_watermark(JOB, _approved_key(offer)) == offer.payload.schedule


def remember_approval(offers: list[Offer], ctx: RunContext) -> None:
    for offer in offers:
        ctx.store.set_watermark(JOB, _approved_key(offer), offer.payload.schedule, ctx.now)


def park(target: AwsTarget, offers: list[Offer], ctx: RunContext) -> list[dict[str, Any]]:
    outcomes = park_resources(target.account, target.region, [o.payload for o in offers], ctx.store, JOB,
                              ctx.now, True)
    return [{"action": o.action, "resource": o.item_id, "outcome": outcomes[memory_key(o.payload.resource)]}
            for o in offers]


def after(judged: Judgement, policy: ParkingPolicy, ctx: RunContext) -> None:
    """Remember resources already in the state a transition wants, so a later manual start or
    stop inside the same period is left alone; publish the schedule table."""
    for item in judged.details:
        if item.remember and not item.action:
            ctx.store.set_watermark(JOB, memory_key(item.resource), item.remember.dumps(), ctx.now)
    create_table_artifact(key=artifact_key(JOB, "schedules"), table=plan_rows(judged.details, {}),
                          description=f"{JOB}: schedule, planned action, hours parked and $ saved per resource")


CONTRACT = Job(name=JOB, policy=ParkingPolicy, service="ec2", collect=collect, judge=judge, after=after,
          act=Action(apply=park, standing=schedule_approved, remember=remember_approval))


@job_flow(CONTRACT)
def dev_parking(
    policy: ParkingPolicy = ParkingPolicy(),  # noqa: B008 - a pydantic default, rendered as a form
    regions: list[str] | None = None,
    role_arns: list[str] | None = None,
    aws_credentials: AwsCredentials | str = "aws",
    store: OpsStore | str = "ops-store",
    calendars_dir: str = "calendars",
    apply: bool = False,
    now: datetime | None = None,
) -> RunResult:
    """Park resources tagged `dataplatform-ops:schedule` (or whose environment tag has a default
    schedule) on each schedule transition. Dry-run unless `apply=True`.

    Args:
        now: Replay only: judge as if it were this time (tests, re-running a past window); leave empty.
    """
    calendars = load_calendars(calendars_dir)
    return run_aws(CONTRACT, policy, regions=regions, role_arns=role_arns, aws_credentials=aws_credentials,
                   store=store, apply=apply, now=now, options={"calendars": calendars})
