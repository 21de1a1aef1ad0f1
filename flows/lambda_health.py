"""lambda-health: erroring, throttled and timing-out Lambda functions, within minutes.

Collect one region at a time (function list with tags, GetMetricData in batches of 500,
'Task timed out' log lines for the functions with errors), judge with `rules.lambda_health`,
and tell: findings open and resolve through the store, with metric history for dashboards.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prefect import flow
from prefect_aws import AwsCredentials

from blocks.loading import load_block
from blocks.store import load_store
from rules.findings import Finding
from rules.lambda_health import LambdaPolicy, judge_functions, log_scan_candidates, metric_rows
from tasks.aws.clients import account_regions, error_summary
from tasks.aws.lambda_ import count_timeout_lines, get_lambda_metrics, list_functions
from tasks.notify import on_flow_failure
from tasks.tell import tell

JOB = "lambda-health"
DEFAULT_POLICY = LambdaPolicy()


@flow(name=JOB, on_failure=[on_flow_failure])
def lambda_health(
    policy: LambdaPolicy = DEFAULT_POLICY,
    regions: list[str] | None = None,
    role_arns: list[str] | None = None,
    name_prefix: str = "",
    tag_filter: dict[str, str] | None = None,
    aws_credentials: str = "aws",
    store: str = "ops-store",
    now: datetime | None = None,
) -> list[Finding]:
    """Judge every function (matching `name_prefix` and `tag_filter`) over the policy's window.

    `regions` None means every enabled region; `role_arns` adds accounts to assume into.
    """
    ops_store = load_store(store)
    creds = load_block(AwsCredentials, aws_credentials, "aws_credentials")
    now = now or datetime.now(timezone.utc)
    start, end = policy.window(now)
    targets, errors = account_regions(creds, role_arns, regions, "lambda")
    findings: list[Finding] = []
    history: list[dict] = []
    calls = functions_seen = 0
    for scope, account, region in targets:
        try:
            functions = list_functions(account, region, name_prefix, tag_filter)
            metrics, used = get_lambda_metrics(account, region, [f.name for f in functions], start, end)
        except Exception as exc:  # one region failing must not sink the rest
            errors[scope] = error_summary(exc)
            continue
        timed_out: dict[str, int] = {}
        candidates = log_scan_candidates(functions, metrics, policy)
        if candidates:
            try:
                timed_out = count_timeout_lines(account, region, candidates, start, end)
            except Exception as exc:  # no log access: the duration check still runs
                errors[f"{scope} logs"] = error_summary(exc)
        findings += judge_functions(functions, metrics, timed_out, policy, scope)
        history += metric_rows(functions, metrics, scope, end)
        calls, functions_seen = calls + used, functions_seen + len(functions)
    ops_store.record_metrics(JOB, history)
    tell(JOB, findings, ops_store, now, repeat_interval=timedelta(hours=policy.repeat_interval_hours),
         errors=errors,
         notes=[f"{functions_seen} functions in {len(targets)} regions, window {start:%H:%M}-{end:%H:%M} UTC, "
                f"{calls} GetMetricData calls"])
    return findings
