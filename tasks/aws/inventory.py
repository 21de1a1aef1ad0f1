"""What an account holds, for the drift comparison: one paged listing per kind, tags in bulk.

Each listing declares its IAM actions; `regional_inventory` reads a region's kinds one after
another and keeps each failure apart, so one denied listing hides only its own kind. Tags of
Lambda functions, queues, tables and buckets come from one Resource Groups Tagging API listing
per region instead of a call per resource; IAM roles (which that API does not cover) are
tagged per role only where the opt-out tag could matter: roles no state manages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from rules.iac_drift import Live
from rules.iac_state import PAB_FLAGS, ingress_rule
from tasks.aws.clients import Account, error_summary, paginate
from tasks.aws.compute import list_db_instances
from tasks.aws.ec2 import list_instances, list_volumes, tag_dict
from tasks.aws.permissions import requires

GONE_INSTANCE_STATES = {"terminated", "shutting-down"}


@requires("tag:GetResources")
def tags_by_arn(account: Account, region: str, types: list[str]) -> dict[str, dict[str, str]]:
    """Tags of the tagged resources of `types` (`lambda:function`, `sqs`...) in a region, by ARN:
    one paged listing (100 per page) instead of a call per resource."""
    tagging = account.client("resourcegroupstaggingapi", region)
    return {r["ResourceARN"]: tag_dict(r.get("Tags")) for r in paginate(
        tagging, "get_resources", "ResourceTagMappingList", ResourceTypeFilters=types)}


def _instances(account: Account, region: str, account_id: str) -> list[Live]:
    return [Live("aws_instance", i.instance_id, region, (("instance_type", i.instance_type),), i.tags,
                 ("ec2", i.instance_type) if i.state == "running" else (), detail=f"{i.instance_type} {i.state}")
            for i in list_instances.fn(account, region) if i.state not in GONE_INSTANCE_STATES]


def _volumes(account: Account, region: str, account_id: str) -> list[Live]:
    return [Live("aws_ebs_volume", v.volume_id, region, (("size", v.size_gb), ("type", v.volume_type)), v.tags,
                 ("ebs", v.volume_type, v.size_gb, v.iops, v.throughput),
                 attached_to=v.attached_to[0] if v.attached_to else "", detail=f"{v.volume_type} {v.size_gb} GiB")
            for v in list_volumes(account, region)]


@requires("ec2:DescribeSecurityGroups")
def _security_groups(account: Account, region: str, account_id: str) -> list[Live]:
    groups = []
    for g in paginate(account.client("ec2", region), "describe_security_groups", "SecurityGroups"):
        rules: list[str] = []
        for p in g.get("IpPermissions", []):
            sources = [r["CidrIp"] for r in p.get("IpRanges", [])] + [r["CidrIpv6"] for r in p.get("Ipv6Ranges", [])] \
                + [r["PrefixListId"] for r in p.get("PrefixListIds", [])] \
                + [r["GroupId"] for r in p.get("UserIdGroupPairs", []) if r.get("GroupId")]
            rules += ingress_rule(p.get("IpProtocol"), p.get("FromPort"), p.get("ToPort"), sources)
        excluded = "a VPC's default security group" if g["GroupName"] == "default" else ""
        groups.append(Live("aws_security_group", g["GroupId"], region, (("ingress", tuple(sorted(set(rules)))),),
                           tag_dict(g.get("Tags")), excluded=excluded, detail=g["GroupName"]))
    return groups


@requires("lambda:ListFunctions")
def _functions(account: Account, region: str, account_id: str) -> list[Live]:
    return [Live("aws_lambda_function", f["FunctionName"], region, (
                ("runtime", f.get("Runtime", "")), ("memory_size", f.get("MemorySize", 128)),
                ("timeout", f.get("Timeout", 3)), ("role", f.get("Role", ""))),
                 detail=f"{f.get('Runtime') or f.get('PackageType', '')} {f.get('MemorySize', 128)} MB")
            for f in paginate(account.client("lambda", region), "list_functions", "Functions")]


def _databases(account: Account, region: str, account_id: str) -> list[Live]:
    return [Live("aws_db_instance", d.db_id, region, (), d.tags,
                 ("rds", d.db_class) if d.status not in ("stopped", "stopping") else (),
                 detail=f"{d.engine} {d.db_class} {d.status}")
            for d in list_db_instances.fn(account, region)]


@requires("redshift:DescribeClusters")
def _clusters(account: Account, region: str, account_id: str) -> list[Live]:
    return [Live("aws_redshift_cluster", c["ClusterIdentifier"], region, (), tag_dict(c.get("Tags")),
                 detail=f"{c.get('NumberOfNodes', 1)} x {c['NodeType']}")
            for c in paginate(account.client("redshift", region), "describe_clusters", "Clusters")]


@requires("sqs:ListQueues")
def _queues(account: Account, region: str, account_id: str) -> list[Live]:
    # MaxResults makes ListQueues page past its unpaged limit of 1,000 URLs.
    return [Live("aws_sqs_queue", url.rstrip("/").rsplit("/", 1)[-1], region)
            for url in paginate(account.client("sqs", region), "list_queues", "QueueUrls", MaxResults=1000)]


@requires("dynamodb:ListTables")
def _tables(account: Account, region: str, account_id: str) -> list[Live]:
    return [Live("aws_dynamodb_table", name, region)
            for name in paginate(account.client("dynamodb", region), "list_tables", "TableNames")]


LISTINGS: dict[str, Callable[[Account, str, str], list[Live]]] = {
    "aws_instance": _instances, "aws_ebs_volume": _volumes, "aws_security_group": _security_groups,
    "aws_lambda_function": _functions, "aws_db_instance": _databases, "aws_redshift_cluster": _clusters,
    "aws_sqs_queue": _queues, "aws_dynamodb_table": _tables,
}
# Kinds whose listing carries no tags: theirs come from the tagging API (these resource types), by ARN.
TAGGED_TYPES = ["lambda:function", "sqs", "dynamodb:table", "s3"]
_ARN = {
    "aws_lambda_function": "arn:aws:lambda:{region}:{account}:function:{id}",
    "aws_sqs_queue": "arn:aws:sqs:{region}:{account}:{id}",
    "aws_dynamodb_table": "arn:aws:dynamodb:{region}:{account}:table/{id}",
    "aws_s3_bucket": "arn:aws:s3:::{id}",
}


@dataclass
class Inventory:
    """A region's resources of the compared kinds; a listing that failed is in `errors`."""

    live: list[Live] = field(default_factory=list)
    listed: set[str] = field(default_factory=set)
    errors: dict[str, str] = field(default_factory=dict)


def _with_tags(items: Iterable[Live], tags: Mapping[str, dict[str, str]], account_id: str) -> list[Live]:
    out = []
    for r in items:
        pattern = _ARN.get(r.kind)
        if pattern and not r.tags:
            found = tags.get(pattern.format(region=r.region, account=account_id, id=r.native_id))
            if found:
                r = Live(r.kind, r.native_id, r.region, r.attrs, found, r.cost, r.excluded, r.attached_to, r.detail)
        out.append(r)
    return out


@requires("s3:GetBucketVersioning", "s3:GetBucketPublicAccessBlock")
def bucket_attrs(account: Account, bucket: str, region: str) -> tuple[tuple[str, Any], ...]:
    """A bucket's versioning status and its own public access block, as drift compares them."""
    s3 = account.client("s3", region)
    attrs: list[tuple[str, Any]] = []
    status = s3.get_bucket_versioning(Bucket=bucket).get("Status")
    attrs.append(("versioning", status or "Disabled"))
    try:
        c = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        flags = (c.get("BlockPublicAcls"), c.get("BlockPublicPolicy"), c.get("IgnorePublicAcls"),
                 c.get("RestrictPublicBuckets"))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchPublicAccessBlockConfiguration":
            raise
        flags = (False,) * len(PAB_FLAGS)
    attrs.append(("public_access_block", tuple(bool(f) for f in flags)))
    return tuple(attrs)


def regional_inventory(account: Account, region: str, account_id: str, kinds: Iterable[str],
                       buckets: Iterable[str], compare_buckets: set[str]) -> Inventory:
    """The region's resources of `kinds`, its `buckets` (with versioning and public access block
    read for those in `compare_buckets`: the ones a state manages), tags from one listing."""
    inventory = Inventory()
    kinds = set(kinds)
    for kind, listing in LISTINGS.items():
        if kind not in kinds:
            continue
        try:
            inventory.live += listing(account, region, account_id)
            inventory.listed.add(kind)
        except Exception as exc:  # AccessDenied, a service not offered here: that kind is not covered
            inventory.errors[kind] = error_summary(exc)
    if "aws_s3_bucket" in kinds:
        try:
            inventory.live += [Live("aws_s3_bucket", b, region, bucket_attrs(account, b, region) if b in compare_buckets
                                    else ()) for b in sorted(buckets)]
            inventory.listed.add("aws_s3_bucket")
        except Exception as exc:
            inventory.errors["aws_s3_bucket"] = error_summary(exc)
    if inventory.live:
        try:
            tags = tags_by_arn(account, region, TAGGED_TYPES)
        except Exception as exc:  # without tags nothing can be called unmanaged safely: opt-outs unknown
            inventory.errors.update({k: f"tags: {error_summary(exc)}" for k in _ARN if k in inventory.listed})
            inventory.listed -= set(_ARN)
            tags = {}
        inventory.live = _with_tags(inventory.live, tags, account_id)
    return inventory


@requires("iam:ListRoles")
def list_roles(account: Account) -> list[Live]:
    """Every IAM role; those AWS creates for its services (`/aws-service-role/`, `/aws-reserved/`)
    are nobody's IaC to manage."""
    roles = []
    for r in paginate(account.client("iam"), "list_roles", "Roles"):
        path = r.get("Path", "/")
        excluded = "created by AWS for a service" if path.startswith(("/aws-service-role/", "/aws-reserved/")) else ""
        roles.append(Live("aws_iam_role", r["RoleName"], "", (), excluded=excluded, detail=f"path {path}"))
    return roles


@requires("iam:ListRoleTags")
def with_role_tags(account: Account, roles: Iterable[Live]) -> list[Live]:
    iam = account.client("iam")
    return [Live(r.kind, r.native_id, r.region, r.attrs,
                 tag_dict(list(paginate(iam, "list_role_tags", "Tags", RoleName=r.native_id))),
                 r.cost, r.excluded, r.attached_to, r.detail) for r in roles]
