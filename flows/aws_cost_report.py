"""Flow `aws-cost-report`: the AWS bill, daily.

Per account (the credentials' own and each of `role_arns`; a management account answers for
its organization): Cost Explorer's daily cost by service and linked account (and by the
policy's cost-allocation tags) from the 1st of last month, kept in the store (a re-read day
replaces itself). Judged by `rules/aws_cost.py`: month to date against the same days of last
month, a run-rate forecast, anomalies against each series' weekday baseline (announced once),
and for every action the jobs applied, what the bill shows since against what it claimed.
"""

from __future__ import annotations

from datetime import datetime, time, timezone

from prefect import flow
from prefect_aws import AwsCredentials

from blocks.loading import load_block
from blocks.store import OpsStore, load_store
from rules.aws_cost import (
    AppliedAction,
    AwsCostPolicy,
    anomalies,
    metric_rows,
    month_to_date,
    read_window,
    realised_savings,
    run_rate_forecast,
    tag_metric_rows,
)
from rules.config import validate_aws_targets
from rules.findings import Coverage
from tasks.aws.clients import Account, error_summary
from tasks.aws.cost_explorer import read_costs
from tasks.notify import on_flow_failure
from tasks.report import write_table
from tasks.tell import tell_events

JOB = "aws-cost-report"
METRIC = "aws_cost_usd"  # one series per payer account; subject = linked account/service, ts = day


@flow(name=JOB, on_failure=[on_flow_failure])
def aws_cost_report(
    policy: AwsCostPolicy = AwsCostPolicy(),  # noqa: B008 - a pydantic default, rendered as a form
    regions: list[str] | None = None,
    role_arns: list[str] | None = None,
    aws_credentials: AwsCredentials | str = "aws",
    store: OpsStore | str = "ops-store",
    now: datetime | None = None,
) -> dict:
    """Report the AWS bill: month to date, forecast, anomalies, realised savings.

    Args:
        policy: History read, anomaly thresholds, tag keys, savings window.
        regions: Report the cost of these regions only; unset means every region.
        role_arns: Roles to assume, one per account, besides the credentials' own account.
        aws_credentials: Name of the prefect-aws `AwsCredentials` block.
        store: Name of the `OpsStore` block (history, anomalies announced, applied actions).
        now: Replay only: judge as if it were this time (tests, re-running a past window); leave empty.
    """
    validate_aws_targets(regions, role_arns)
    ops_store = load_store(store)
    creds = load_block(AwsCredentials, aws_credentials, "aws_credentials")
    now = now or datetime.now(timezone.utc)
    today = now.date()
    start, end = read_window(today, policy)
    coverage = Coverage()
    accounts = [Account(creds), *(Account(creds, arn) for arn in role_arns or [])]
    reads = {}
    for account in accounts:
        label = account.role_arn or "credentials' account"
        try:
            payer, lines, tags = read_costs(account, start, end, regions, policy.tag_keys)
        except Exception as exc:  # one account failing does not sink the others
            coverage.fail(label, error_summary(exc))
            continue
        coverage.mark_read(payer)
        reads[payer] = (lines, tags)
        window = datetime.combine(start, time(), timezone.utc), datetime.combine(end, time(), timezone.utc)
        ops_store.replace_metrics(JOB, f"{METRIC}:{payer}", *window, metric_rows(lines))
        for key in policy.tag_keys:
            ops_store.replace_metrics(JOB, f"{METRIC}_by_tag:{payer}:{key}", *window,
                                      tag_metric_rows(t for t in tags if t.key == key))

    found, table, notes = [], [], []
    every_line = [line for lines, _ in reads.values() for line in lines]
    billed_accounts = {line.account for line in every_line}
    for payer, (lines, _) in reads.items():
        found += anomalies(lines, payer, today, policy)
        table += [{"account": payer, **row} for row in month_to_date(lines, today)]
        notes.append(f"{payer}: this month so far ${table[-1]['month_to_date_usd']:,.2f} "
                     f"({table[-1]['change']} against the same days of last month); at the last 7 days' "
                     f"rate the month ends near ${run_rate_forecast(lines, today):,.2f}")
    savings = realised_savings(
        [AppliedAction(a["job"], a["action"], a["resource_id"], a["scope"], a["ts"], a["kind"], a["monthly_cost_usd"])
         for a in ops_store.applied_actions(datetime.combine(start, time(), timezone.utc))
         if a["scope"].split("/", 1)[0] in billed_accounts],
        every_line, today, policy)
    if savings:
        realised = [s for s in savings if s.realised_monthly_usd is not None]
        write_table(JOB, "savings", [s.row() for s in savings],
                    f"{JOB}: {len(savings)} applied actions; the bill shows "
                    f"${sum(s.realised_monthly_usd for s in realised):,.2f}/month less on their lines for "
                    f"${sum(s.action.claimed_monthly_usd or 0 for s in realised):,.2f}/month claimed")
    announced = tell_events(JOB, found, ops_store, now, coverage, notes=notes, table=table)
    return {"month_to_date": table, "anomalies": found, "announced": announced.opened,
            "savings": [s.row() for s in savings], "errors": coverage.errors}
