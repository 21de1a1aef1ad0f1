"""Lambda functions: configuration with tags, CloudWatch numbers in bulk, timeout log lines.

Work per region is a few pages: ListFunctions (50 per page), tags through the Resource Groups
Tagging API (100 per page, instead of one ListTags call per function), and GetMetricData with
up to 500 series per call (four per function).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from rules.lambda_health import LambdaFunction, LambdaMetrics
from tasks.aws.clients import Account, PageCounter, paginate
from tasks.aws.cloudwatch import MetricQuery, get_metric_data
from tasks.aws.permissions import requires

TIMED_OUT_PATTERN = '"Task timed out"'
MAX_LOG_PAGES_PER_FUNCTION = 5
# Query-id suffix -> (CloudWatch metric, statistic).
METRICS = {"inv": ("Invocations", "Sum"), "err": ("Errors", "Sum"),
           "thr": ("Throttles", "Sum"), "dur": ("Duration", "Maximum")}


@task(cache_policy=NO_CACHE)
@requires("lambda:ListFunctions", "tag:GetResources")
def list_functions(
    account: Account, region: str, name_prefix: str = "", tag_filter: Mapping[str, str] | None = None
) -> list[LambdaFunction]:
    """Functions of one region whose name starts with `name_prefix` and carry every `tag_filter` tag."""
    tagging = account.client("resourcegroupstaggingapi", region)
    tags_by_arn = {
        r["ResourceARN"]: {t["Key"]: t["Value"] for t in r.get("Tags", [])}
        for r in paginate(tagging, "get_resources", "ResourceTagMappingList",
                          ResourceTypeFilters=["lambda:function"])
    }
    functions = []
    for fn in paginate(account.client("lambda", region), "list_functions", "Functions"):
        name = fn["FunctionName"]
        tags = tags_by_arn.get(fn["FunctionArn"], {})
        if not name.startswith(name_prefix):
            continue
        if any(tags.get(k) != v for k, v in (tag_filter or {}).items()):
            continue
        functions.append(LambdaFunction(
            name=name,
            region=region,
            timeout_seconds=int(fn.get("Timeout", 3)),
            memory_mb=int(fn.get("MemorySize", 128)),
            runtime=fn.get("Runtime", ""),
            architectures=tuple(fn.get("Architectures") or ("x86_64",)),
            log_group=(fn.get("LoggingConfig") or {}).get("LogGroup", ""),
            tags=tags,
        ))
    return functions


@task(cache_policy=NO_CACHE)
@requires("cloudwatch:GetMetricData")
def get_lambda_metrics(
    account: Account, region: str, names: Sequence[str], start: datetime, end: datetime
) -> tuple[dict[str, LambdaMetrics], int]:
    """Invocations, Errors, Throttles (sums) and Duration (maximum) per function over [start, end).

    Returns the metrics by function name and the number of GetMetricData calls made.
    """
    if not names:
        return {}, 0
    # One period spanning the window (a multiple of 60 s) gives one datapoint per series.
    period = max(60, -(-int((end - start).total_seconds()) // 60) * 60)
    queries = [
        MetricQuery(id=f"f{i}_{key}", namespace="AWS/Lambda", metric=metric,
                    dimensions={"FunctionName": name}, stat=stat, period=period)
        for i, name in enumerate(names)
        for key, (metric, stat) in METRICS.items()
    ]
    data = get_metric_data(account.client("cloudwatch", region), queries, start, end)
    result = {}
    for i, name in enumerate(names):
        durations = data.values(f"f{i}_dur")
        result[name] = LambdaMetrics(
            invocations=sum(data.values(f"f{i}_inv")),
            errors=sum(data.values(f"f{i}_err")),
            throttles=sum(data.values(f"f{i}_thr")),
            duration_max_ms=max(durations) if durations else None,
        )
    return result, data.calls


@task(cache_policy=NO_CACHE)
@requires("logs:FilterLogEvents")
def count_timeout_lines(
    account: Account, region: str, functions: Sequence[LambdaFunction], start: datetime, end: datetime
) -> dict[str, int]:
    """'Task timed out' lines per function in [start, end); a function without a log group has 0.

    Raises on AccessDenied so the caller can report the log scan as not covered.
    """
    logs = account.client("logs", region)
    counts = {}
    for fn in functions:
        counter = PageCounter()
        try:
            counts[fn.name] = sum(1 for _ in paginate(
                logs, "filter_log_events", "events", counter=counter,
                max_pages=MAX_LOG_PAGES_PER_FUNCTION, logGroupName=fn.log_group,
                filterPattern=TIMED_OUT_PATTERN,
                startTime=int(start.timestamp() * 1000), endTime=int(end.timestamp() * 1000),
            ))
        except logs.exceptions.ResourceNotFoundException:
            counts[fn.name] = 0
    return counts
