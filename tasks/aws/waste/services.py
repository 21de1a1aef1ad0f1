"""Waste listers for ECR, DynamoDB and Secrets Manager, and DynamoDB's switch to on-demand."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from botocore.exceptions import ClientError

from rules.config import opted_out
from rules.waste import Resource, WastePolicy
from tasks.aws.actions import Outcome
from tasks.aws.clients import Account, paginate
from tasks.aws.cloudwatch import MetricQuery, get_metric_data
from tasks.aws.ec2 import tag_dict
from tasks.aws.permissions import requires
from tasks.aws.waste.scan import Scan

DAY = 86_400


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


@requires("ecr:DescribeRepositories", "ecr:GetLifecyclePolicy", "ecr:DescribeImages", "ecr:ListTagsForResource")
def list_repositories(scan: Scan) -> list[Resource]:
    """Repositories with their lifecycle policy (or none), image bytes, and untagged images older
    than `ecr_untagged_days`. Per repository: one policy call, one tag call, the image pages."""
    ecr = scan.client("ecr")
    cutoff = scan.now - timedelta(days=scan.policy.ecr_untagged_days)
    resources = []
    for repo in paginate(ecr, "describe_repositories", "repositories"):
        name = repo["repositoryName"]
        try:
            has_policy = bool(ecr.get_lifecycle_policy(repositoryName=name).get("lifecyclePolicyText"))
        except ClientError as exc:
            if _code(exc) != "LifecyclePolicyNotFoundException":
                raise
            has_policy = False
        images = untagged = n_bytes = untagged_bytes = 0
        for image in paginate(ecr, "describe_images", "imageDetails", repositoryName=name):
            size = image.get("imageSizeInBytes", 0)
            images, n_bytes = images + 1, n_bytes + size
            if not image.get("imageTags") and image.get("imagePushedAt") and image["imagePushedAt"] < cutoff:
                untagged, untagged_bytes = untagged + 1, untagged_bytes + size
        tags = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"]).get("tags", [])
        resources.append(Resource(
            id=name, region=scan.region, arn=repo["repositoryArn"], tags=tag_dict(tags), created=repo.get("createdAt"),
            facts={"lifecycle_policy": has_policy, "images": images, "bytes": n_bytes,
                   "untagged_images": untagged, "untagged_bytes": untagged_bytes}))
    return resources


def _capacity(description: dict[str, Any]) -> tuple[int, int]:
    throughput = description.get("ProvisionedThroughput", {})
    return throughput.get("ReadCapacityUnits", 0), throughput.get("WriteCapacityUnits", 0)


@requires("dynamodb:ListTables", "dynamodb:DescribeTable", "dynamodb:ListTagsOfResource", "cloudwatch:GetMetricData")
def list_tables(scan: Scan) -> list[Resource]:
    """Provisioned tables (with their GSIs' capacity) and the capacity they consumed over
    `dynamodb_lookback_days`, from one GetMetricData per 250 tables and indexes."""
    ddb = scan.client("dynamodb")
    tables = []
    for name in paginate(ddb, "list_tables", "TableNames"):
        table = ddb.describe_table(TableName=name)["Table"]
        if table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED") == "PROVISIONED":
            tables.append(table)
    if not tables:
        return []
    queries, owner = [], {}  # query id -> (table index, "r" | "w")
    for i, t in enumerate(tables):
        targets = [{"TableName": t["TableName"]}] + [
            {"TableName": t["TableName"], "GlobalSecondaryIndexName": g["IndexName"]}
            for g in t.get("GlobalSecondaryIndexes", [])]
        for j, dims in enumerate(targets):
            for rw, metric in (("r", "ConsumedReadCapacityUnits"), ("w", "ConsumedWriteCapacityUnits")):
                owner[f"t{i}_{j}_{rw}"] = (i, rw)
                queries.append(MetricQuery(f"t{i}_{j}_{rw}", "AWS/DynamoDB", metric, dims, "Sum", DAY))
    end = scan.now.replace(minute=0, second=0, microsecond=0)
    data = get_metric_data(scan.client("cloudwatch"), queries, end - timedelta(days=scan.policy.dynamodb_lookback_days),
                           end)
    consumed: dict[tuple[int, str], float] = {}
    for query_id, key in owner.items():
        consumed[key] = consumed.get(key, 0.0) + sum(data.values(query_id))
    resources = []
    for i, t in enumerate(tables):
        rcu, wcu = _capacity(t)
        for g in t.get("GlobalSecondaryIndexes", []):
            g_rcu, g_wcu = _capacity(g)
            rcu, wcu = rcu + g_rcu, wcu + g_wcu
        tags = ddb.list_tags_of_resource(ResourceArn=t["TableArn"]).get("Tags", [])
        resources.append(Resource(
            id=t["TableArn"], region=scan.region, arn=t["TableArn"], tags=tag_dict(tags),
            created=t.get("CreationDateTime"),
            facts={"table": t["TableName"], "billing_mode": "PROVISIONED", "rcu": rcu, "wcu": wcu,
                   "indexes": len(t.get("GlobalSecondaryIndexes", [])),
                   "consumed_reads": consumed.get((i, "r"), 0.0), "consumed_writes": consumed.get((i, "w"), 0.0)}))
    return resources


@requires("dynamodb:DescribeTable", "dynamodb:ListTagsOfResource", "dynamodb:UpdateTable", write=True)
def switch_to_on_demand(account: Account, region: str, resource: Resource, policy: WastePolicy) -> Outcome:
    """Billing mode PAY_PER_REQUEST. Re-reads the table: already on-demand is done; tagged since is skipped.
    AWS allows a switch to on-demand once per 24 hours per table: a refusal is reported as failed."""
    ddb = account.client("dynamodb", region)
    try:
        table = ddb.describe_table(TableName=resource.facts["table"])["Table"]
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            return Outcome("done", "table already gone")
        raise
    if table.get("BillingModeSummary", {}).get("BillingMode") == "PAY_PER_REQUEST":
        return Outcome("done", "already on-demand")
    if opted_out(tag_dict(ddb.list_tags_of_resource(ResourceArn=table["TableArn"]).get("Tags")), policy.opt_out_tag):
        return Outcome("skipped", f"tagged {policy.opt_out_tag}")
    ddb.update_table(TableName=resource.facts["table"], BillingMode="PAY_PER_REQUEST")
    return Outcome("done", "billing mode set to on-demand (PAY_PER_REQUEST)")


@requires("secretsmanager:ListSecrets")
def list_secrets(scan: Scan) -> list[Resource]:
    """Secrets with when they were last read (AWS keeps the day) and created; tags come with the list."""
    resources = []
    for s in paginate(scan.client("secretsmanager"), "list_secrets", "SecretList"):
        last = s.get("LastAccessedDate")
        resources.append(Resource(
            id=s["ARN"], region=scan.region, arn=s["ARN"], tags=tag_dict(s.get("Tags")), created=s.get("CreatedDate"),
            facts={"name": s.get("Name", ""), "last_accessed": last.isoformat() if last else None,
                   "deleted": bool(s.get("DeletedDate"))}))
    return resources
