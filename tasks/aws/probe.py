"""Harmless calls that prove an IAM read permission before the first scheduled run.

`PROBES` maps each read action a job declares (`@requires`) to one call that needs exactly it
and changes nothing; a contract test fails when a job declares an action without a probe.
The answer is classified: `ok` (AWS authorized it: a result, or "not found" for the placeholder
resource the probe names), `missing` (a denial: the action is named), `unreachable` (no answer,
or the credentials were refused) or `unproven` (an answer that proves neither, e.g. an API the
endpoint does not implement). Nothing is called "ok" without an authorized answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tasks.aws.clients import Account, NoAnswer, deadline, error_summary

GLOBAL = "(global)"  # the region of a probe whose answer holds for every region of the account
PLACEHOLDER = "dataplatform-ops-permission-check"
PROBE_SECONDS = 30
# A probe is one question: a throttled or failing answer is asked once more, not eight times.
PROBE_CONFIG = Config(retries={"mode": "standard", "max_attempts": 2})

_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError",
           "AuthorizationErrorException", "UnauthorizedAccess", "NotAuthorized", "Forbidden"}
_CREDENTIALS = {"InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch",
                "ExpiredToken", "ExpiredTokenException", "InvalidAccessKeyId", "AuthFailure"}


def _metric_query() -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    return {"MetricDataQueries": [{"Id": "probe", "MetricStat": {
        "Metric": {"Namespace": "AWS/EC2", "MetricName": "CPUUtilization"}, "Period": 300, "Stat": "Average"}}],
        "StartTime": now - timedelta(minutes=10), "EndTime": now}


@dataclass(frozen=True)
class Probe:
    """One harmless call: boto3 service and method, its arguments, and whether it is regional."""

    service: str
    method: str
    kwargs: dict[str, Any] | Callable[[], dict[str, Any]]
    regional: bool = True
    bucket: bool = False  # a bucket-level S3 call: aimed at a real bucket when one is listed

    def arguments(self, bucket: str | None) -> dict[str, Any]:
        kwargs = dict(self.kwargs() if callable(self.kwargs) else self.kwargs)
        if self.bucket:
            kwargs["Bucket"] = bucket or PLACEHOLDER
        return kwargs


PROBES: dict[str, Probe] = {
    "sts:GetCallerIdentity": Probe("sts", "get_caller_identity", {}, regional=False),
    "ec2:DescribeRegions": Probe("ec2", "describe_regions", {}),
    "ec2:DescribeAddresses": Probe("ec2", "describe_addresses", {}),
    "ec2:DescribeImages": Probe("ec2", "describe_images", {"Owners": ["self"], "MaxResults": 5}),
    "ec2:DescribeInstances": Probe("ec2", "describe_instances", {"MaxResults": 5}),
    "ec2:DescribeInstanceTypes": Probe("ec2", "describe_instance_types", {"MaxResults": 5}),
    "ec2:DescribeSnapshots": Probe("ec2", "describe_snapshots", {"OwnerIds": ["self"], "MaxResults": 5}),
    "ec2:DescribeVolumes": Probe("ec2", "describe_volumes", {"MaxResults": 5}),
    "ec2:DescribeVolumesModifications": Probe("ec2", "describe_volumes_modifications", {"MaxResults": 5}),
    "cloudwatch:GetMetricData": Probe("cloudwatch", "get_metric_data", _metric_query),
    "cloudwatch:ListMetrics": Probe("cloudwatch", "list_metrics", {"Namespace": "AWS/EBS"}),
    "elasticache:DescribeCacheClusters": Probe("elasticache", "describe_cache_clusters", {"MaxRecords": 20}),
    "lambda:ListFunctions": Probe("lambda", "list_functions", {"MaxItems": 1}),
    "logs:FilterLogEvents": Probe("logs", "filter_log_events", {"logGroupName": f"/{PLACEHOLDER}", "limit": 1}),
    "pricing:GetProducts": Probe("pricing", "get_products", {"ServiceCode": "AmazonEC2", "MaxResults": 1},
                                 regional=False),
    "rds:DescribeDBClusters": Probe("rds", "describe_db_clusters", {"MaxRecords": 20}),
    "rds:DescribeDBInstances": Probe("rds", "describe_db_instances", {"MaxRecords": 20}),
    "rds:DescribeOrderableDBInstanceOptions": Probe(
        "rds", "describe_orderable_db_instance_options", {"Engine": "mysql", "MaxRecords": 20}),
    "redshift:GetClusterCredentials": Probe(
        "redshift", "get_cluster_credentials", {"DbUser": "probe", "ClusterIdentifier": PLACEHOLDER}),
    "redshift-serverless:GetCredentials": Probe(
        "redshift-serverless", "get_credentials", {"workgroupName": PLACEHOLDER}),
    "sqs:ListQueues": Probe("sqs", "list_queues", {"MaxResults": 1}),
    "sqs:GetQueueAttributes": Probe("sqs", "get_queue_attributes", lambda: {
        "QueueUrl": f"https://sqs.us-east-1.amazonaws.com/000000000000/{PLACEHOLDER}",
        "AttributeNames": ["ApproximateNumberOfMessages"]}),
    "tag:GetResources": Probe("resourcegroupstaggingapi", "get_resources", {"ResourcesPerPage": 1}),
    "s3:ListAllMyBuckets": Probe("s3", "list_buckets", {}, regional=False),
    "s3:ListBucket": Probe("s3", "list_objects_v2", {"MaxKeys": 1}, regional=False, bucket=True),
    "s3:GetBucketLocation": Probe("s3", "get_bucket_location", {}, regional=False, bucket=True),
    "s3:GetBucketTagging": Probe("s3", "get_bucket_tagging", {}, regional=False, bucket=True),
    "s3:GetLifecycleConfiguration": Probe("s3", "get_bucket_lifecycle_configuration", {}, regional=False,
                                          bucket=True),
    "s3:GetInventoryConfiguration": Probe("s3", "list_bucket_inventory_configurations", {}, regional=False,
                                          bucket=True),
    "s3:GetObject": Probe("s3", "head_object", {"Key": PLACEHOLDER}, regional=False, bucket=True),
}
# Proven by entering each `role_arns` account, not per region.
ENTERED = {"sts:AssumeRole"}


@dataclass(frozen=True)
class Answer:
    """What one probe showed: `ok`, `missing`, `unreachable` or `unproven`, and why."""

    action: str
    outcome: str
    detail: str = ""


def classify(action: str, exc: Exception | None) -> Answer:
    """Pure: the outcome of a probe from the exception it raised (None: it succeeded)."""
    if exc is None:
        return Answer(action, "ok")
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _DENIED or (status == 403 and code not in _CREDENTIALS):
            return Answer(action, "missing", error_summary(exc))
        if code in _CREDENTIALS:
            return Answer(action, "unreachable", f"credentials refused: {error_summary(exc)}")
        if "NotFound" in code or code.startswith(("NoSuch", "NonExistent")) or status == 404:
            return Answer(action, "ok", f"authorized ({code} for the probe's placeholder)")
        return Answer(action, "unproven", error_summary(exc))
    if isinstance(exc, (BotoCoreError, NoAnswer, OSError)):
        return Answer(action, "unreachable", error_summary(exc))
    return Answer(action, "unproven", error_summary(exc))


def probe(account: Account, region: str, action: str, bucket: str | None = None) -> Answer:
    """Make the harmless call for `action` in `region` (any region for a global one)."""
    spec = PROBES[action]
    with deadline(PROBE_SECONDS, f"{action} in {region}"):
        try:
            kwargs = account._client_kwargs()
            kwargs["config"] = kwargs["config"].merge(PROBE_CONFIG)
            client = account.session.client(spec.service, region_name=region if spec.regional else "us-east-1",
                                            **kwargs)
            getattr(client, spec.method)(**spec.arguments(bucket))
        except Exception as exc:  # every failure is an answer to classify
            return classify(action, exc)
    return classify(action, None)


def a_bucket(account: Account) -> str | None:
    """A bucket of the account to aim bucket-level probes at (None: none listed, or not allowed)."""
    try:
        buckets = account.client("s3", "us-east-1").list_buckets().get("Buckets", [])
    except Exception:  # `s3:ListAllMyBuckets` has its own probe, which reports the denial
        return None
    return buckets[0]["Name"] if buckets else None
