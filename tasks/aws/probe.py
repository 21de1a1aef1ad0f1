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
from datetime import date, datetime, timedelta, timezone
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


def _metric_query(account_id: str, region: str) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    return {"MetricDataQueries": [{"Id": "probe", "MetricStat": {
        "Metric": {"Namespace": "AWS/EC2", "MetricName": "CPUUtilization"}, "Period": 300, "Stat": "Average"}}],
        "StartTime": now - timedelta(minutes=10), "EndTime": now}


@dataclass(frozen=True)
class Probe:
    """One harmless call: boto3 service and method, its arguments (or `(account_id, region) ->
    arguments`, for names and ARNs in the account probed), and whether it is regional."""

    service: str
    method: str
    kwargs: dict[str, Any] | Callable[[str, str], dict[str, Any]]
    regional: bool = True
    bucket: bool = False  # a bucket-level S3 call: aimed at a real bucket when one is listed

    def arguments(self, bucket: str | None, account_id: str = "", region: str = "") -> dict[str, Any]:
        kwargs = dict(self.kwargs(account_id, region) if callable(self.kwargs) else self.kwargs)
        if self.bucket:
            kwargs["Bucket"] = bucket or PLACEHOLDER
        return kwargs


PROBES: dict[str, Probe] = {
    "sts:GetCallerIdentity": Probe("sts", "get_caller_identity", {}, regional=False),
    "ec2:DescribeRegions": Probe("ec2", "describe_regions", {}),
    # One day of one metric: Cost Explorer bills $0.01 per request, so a probe is one request.
    "ce:GetCostAndUsage": Probe("ce", "get_cost_and_usage", lambda account_id, region: {
        "TimePeriod": {"Start": (date.today() - timedelta(days=1)).isoformat(), "End": date.today().isoformat()},
        "Granularity": "DAILY", "Metrics": ["UnblendedCost"]}, regional=False),
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
    "sqs:GetQueueAttributes": Probe("sqs", "get_queue_attributes", lambda a, r: {
        "QueueUrl": f"https://sqs.{r}.amazonaws.com/{a}/{PLACEHOLDER}",
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
    "s3:GetBucketPublicAccessBlock": Probe("s3", "get_public_access_block", {}, regional=False, bucket=True),
    "s3:GetBucketVersioning": Probe("s3", "get_bucket_versioning", {}, regional=False, bucket=True),
    "s3:GetEncryptionConfiguration": Probe("s3", "get_bucket_encryption", {}, regional=False, bucket=True),
    "s3:ListBucketMultipartUploads": Probe("s3", "list_multipart_uploads", {"MaxUploads": 1}, regional=False,
                                           bucket=True),
    "s3:ListBucketVersions": Probe("s3", "list_object_versions", {"MaxKeys": 1}, regional=False, bucket=True),
    "s3:ListMultipartUploadParts": Probe("s3", "list_parts", {"Key": PLACEHOLDER, "UploadId": PLACEHOLDER},
                                         regional=False, bucket=True),
    "s3:GetAccountPublicAccessBlock": Probe("s3control", "get_public_access_block", lambda a, r: {"AccountId": a},
                                            regional=False),
    "cloudformation:ListStacks": Probe("cloudformation", "list_stacks", {}),
    "cloudformation:ListStackResources": Probe("cloudformation", "list_stack_resources", {"StackName": PLACEHOLDER}),
    "dynamodb:ListTables": Probe("dynamodb", "list_tables", {"Limit": 1}),
    "dynamodb:DescribeTable": Probe("dynamodb", "describe_table", {"TableName": PLACEHOLDER}),
    "dynamodb:Scan": Probe("dynamodb", "scan", {"TableName": PLACEHOLDER, "Limit": 1}),
    "dynamodb:ListTagsOfResource": Probe("dynamodb", "list_tags_of_resource", lambda a, r: {
        "ResourceArn": f"arn:aws:dynamodb:{r}:{a}:table/{PLACEHOLDER}"}),
    "ec2:DescribeNatGateways": Probe("ec2", "describe_nat_gateways", {"MaxResults": 5}),
    "ec2:DescribeSecurityGroups": Probe("ec2", "describe_security_groups", {"MaxResults": 5}),
    "ecr:DescribeRepositories": Probe("ecr", "describe_repositories", {"maxResults": 1}),
    "ecr:DescribeImages": Probe("ecr", "describe_images", {"repositoryName": PLACEHOLDER, "maxResults": 1}),
    "ecr:GetLifecyclePolicy": Probe("ecr", "get_lifecycle_policy", {"repositoryName": PLACEHOLDER}),
    "ecr:ListTagsForResource": Probe("ecr", "list_tags_for_resource", lambda a, r: {
        "resourceArn": f"arn:aws:ecr:{r}:{a}:repository/{PLACEHOLDER}"}),
    "elasticloadbalancing:DescribeLoadBalancers": Probe("elbv2", "describe_load_balancers", {"PageSize": 1}),
    "elasticloadbalancing:DescribeTargetGroups": Probe("elbv2", "describe_target_groups", {"PageSize": 1}),
    "elasticloadbalancing:DescribeTags": Probe("elbv2", "describe_tags", lambda a, r: {"ResourceArns": [
        f"arn:aws:elasticloadbalancing:{r}:{a}:loadbalancer/app/{PLACEHOLDER[:32]}/0123456789abcdef"]}),
    "elasticloadbalancing:DescribeTargetHealth": Probe("elbv2", "describe_target_health", lambda a, r: {
        "TargetGroupArn": f"arn:aws:elasticloadbalancing:{r}:{a}:targetgroup/{PLACEHOLDER[:32]}/0123456789abcdef"}),
    "elasticloadbalancing:DescribeInstanceHealth": Probe("elb", "describe_instance_health",
                                                         {"LoadBalancerName": PLACEHOLDER[:32]}),
    "elasticmapreduce:ListClusters": Probe("emr", "list_clusters", {}),
    "elasticmapreduce:DescribeCluster": Probe("emr", "describe_cluster", {"ClusterId": "j-0000000000000"}),
    "elasticmapreduce:ListInstanceFleets": Probe("emr", "list_instance_fleets", {"ClusterId": "j-0000000000000"}),
    "elasticmapreduce:ListInstanceGroups": Probe("emr", "list_instance_groups", {"ClusterId": "j-0000000000000"}),
    "iam:ListRoles": Probe("iam", "list_roles", {"MaxItems": 1}, regional=False),
    "iam:GetRolePolicy": Probe("iam", "get_role_policy", {"RoleName": PLACEHOLDER, "PolicyName": PLACEHOLDER},
                               regional=False),
    "iam:ListAttachedRolePolicies": Probe("iam", "list_attached_role_policies", {"RoleName": PLACEHOLDER},
                                          regional=False),
    "iam:ListRolePolicies": Probe("iam", "list_role_policies", {"RoleName": PLACEHOLDER}, regional=False),
    "iam:ListRoleTags": Probe("iam", "list_role_tags", {"RoleName": PLACEHOLDER}, regional=False),
    # An AWS-managed policy: there in every account, and reading it changes nothing.
    "iam:GetPolicy": Probe("iam", "get_policy", {"PolicyArn": "arn:aws:iam::aws:policy/ReadOnlyAccess"},
                           regional=False),
    "iam:GetPolicyVersion": Probe("iam", "get_policy_version", {
        "PolicyArn": "arn:aws:iam::aws:policy/ReadOnlyAccess", "VersionId": "v1"}, regional=False),
    "kinesis:ListStreams": Probe("kinesis", "list_streams", {"Limit": 1}),
    "kinesis:DescribeStreamSummary": Probe("kinesis", "describe_stream_summary", {"StreamName": PLACEHOLDER}),
    "kinesis:ListTagsForStream": Probe("kinesis", "list_tags_for_stream", {"StreamName": PLACEHOLDER}),
    "logs:DescribeLogGroups": Probe("logs", "describe_log_groups", {"limit": 1}),
    "rds:DescribeDBSnapshots": Probe("rds", "describe_db_snapshots", {"MaxRecords": 20}),
    "redshift:DescribeClusters": Probe("redshift", "describe_clusters", {"MaxRecords": 20}),
    "redshift:DescribeReservedNodes": Probe("redshift", "describe_reserved_nodes", {"MaxRecords": 20}),
    "rds:DescribeReservedDBInstances": Probe("rds", "describe_reserved_db_instances", {"MaxRecords": 20}),
    # One endpoint for the account: the same answer from every region.
    "savingsplans:DescribeSavingsPlans": Probe("savingsplans", "describe_savings_plans", {"maxResults": 1},
                                               regional=False),
    "sagemaker:ListNotebookInstances": Probe("sagemaker", "list_notebook_instances", {"MaxResults": 1}),
    "sagemaker:ListTags": Probe("sagemaker", "list_tags", lambda a, r: {
        "ResourceArn": f"arn:aws:sagemaker:{r}:{a}:notebook-instance/{PLACEHOLDER}"}),
    "secretsmanager:ListSecrets": Probe("secretsmanager", "list_secrets", {"MaxResults": 1}),
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


def probe(account: Account, region: str, action: str, bucket: str | None = None, account_id: str = "") -> Answer:
    """Make the harmless call for `action` in `region` (any region for a global one) of the
    account `account_id`."""
    spec = PROBES[action]
    region = region if spec.regional else "us-east-1"
    with deadline(PROBE_SECONDS, f"{action} in {region}"):
        try:
            kwargs = account._client_kwargs()
            kwargs["config"] = kwargs["config"].merge(PROBE_CONFIG)
            client = account.session.client(spec.service, region_name=region, **kwargs)
            getattr(client, spec.method)(**spec.arguments(bucket, account_id, region))
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
