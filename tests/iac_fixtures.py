"""State files as the tools write them, for planting in moto S3.

Terraform: state format version 4 as Terraform 1.x serializes it (`version`, `terraform_version`,
`serial`, `lineage`, `outputs`, `resources[]` with `module`, `mode`, `type`, `name`, `each`,
`provider`, `instances[]` with `index_key`, `schema_version`, `attributes`, `sensitive_attributes`,
`private`, `dependencies`; `check_results`), two-space indented with a trailing newline. The S3
backend's DynamoDB items: `LockID = "<bucket>/<key>"` with `Info` (the lock's JSON) and
`LockID = "<bucket>/<key>-md5"` with `Digest` (hex MD5 of the state), the lock file `<key>.tflock`.
Pulumi: a checkpoint, version 3, as the DIY backend keeps it at `.pulumi/stacks/<project>/<stack>.json`.
Attribute sets follow the AWS provider 5.x schemas, trimmed to a realistic subset.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timezone
from typing import Any

PROVIDER = 'provider["registry.terraform.io/hashicorp/aws"]'
ACCOUNT = "123456789012"  # moto's default account


def tf_state(resources: list[dict[str, Any]], *, serial: int = 7, outputs: dict[str, Any] | None = None,
             version: int = 4, terraform_version: str = "1.9.8") -> bytes:
    document = {
        "version": version,
        "terraform_version": terraform_version,
        "serial": serial,
        "lineage": str(uuid.uuid4()),
        "outputs": outputs or {},
        "resources": resources,
        "check_results": None,
    }
    return (json.dumps(document, indent=2) + "\n").encode()


def tf_resource(rtype: str, name: str, instances: list[dict[str, Any]], *, module: str | None = None,
                mode: str = "managed", each: str | None = None, provider: str = PROVIDER) -> dict[str, Any]:
    resource: dict[str, Any] = {}
    if module:
        resource["module"] = module
    resource |= {"mode": mode, "type": rtype, "name": name}
    if each:
        resource["each"] = each
    resource |= {"provider": provider, "instances": instances}
    return resource


def tf_instance(attributes: dict[str, Any], *, index_key: Any = None, schema_version: int = 0,
                sensitive: list[str] = (), dependencies: list[str] = ()) -> dict[str, Any]:
    instance: dict[str, Any] = {}
    if index_key is not None:
        instance["index_key"] = index_key
    instance |= {
        "schema_version": schema_version,
        "attributes": attributes,
        "sensitive_attributes": [[{"type": "get_attr", "value": s}] for s in sensitive],
        "private": "eyJzY2hlbWFfdmVyc2lvbiI6IjEifQ==",
    }
    if dependencies:
        instance["dependencies"] = list(dependencies)
    return instance


def arn(service: str, region: str, resource: str, account: str = ACCOUNT) -> str:
    return f"arn:aws:{service}:{region}:{account}:{resource}"


def aws_instance(instance_id: str, instance_type: str, region: str, root_volume: str, sg_ids: list[str],
                 **extra: Any) -> dict[str, Any]:
    return {
        "ami": "ami-0c55b159cbfafe1f0", "arn": arn("ec2", region, f"instance/{instance_id}"),
        "associate_public_ip_address": False, "availability_zone": f"{region}a", "ebs_block_device": [],
        "ebs_optimized": False, "iam_instance_profile": "", "id": instance_id, "instance_state": "running",
        "instance_type": instance_type, "key_name": "", "monitoring": False,
        "private_ip": "10.0.1.12", "root_block_device": [{
            "delete_on_termination": True, "device_name": "/dev/xvda", "encrypted": True, "iops": 3000,
            "kms_key_id": "", "tags": {}, "throughput": 125, "volume_id": root_volume, "volume_size": 8,
            "volume_type": "gp3"}],
        "subnet_id": "subnet-0a1b2c3d", "tags": {"Name": instance_id}, "tags_all": {"Name": instance_id},
        "tenancy": "default", "user_data": None, "vpc_security_group_ids": sg_ids, **extra,
    }


def aws_ebs_volume(volume_id: str, size: int, vtype: str, region: str) -> dict[str, Any]:
    return {"arn": arn("ec2", region, f"volume/{volume_id}"), "availability_zone": f"{region}a",
            "encrypted": True, "final_snapshot": False, "id": volume_id, "iops": 3000 if vtype == "gp3" else 0,
            "kms_key_id": "", "multi_attach_enabled": False, "outpost_arn": "", "size": size, "snapshot_id": "",
            "tags": {}, "tags_all": {}, "throughput": 125 if vtype == "gp3" else 0, "timeouts": None, "type": vtype}


def sg_rule(protocol: str, from_port: int, to_port: int, cidrs: list[str]) -> dict[str, Any]:
    return {"cidr_blocks": cidrs, "description": "", "from_port": from_port, "ipv6_cidr_blocks": [],
            "prefix_list_ids": [], "protocol": protocol, "security_groups": [], "self": False, "to_port": to_port}


def aws_security_group(group_id: str, name: str, region: str, ingress: list[dict[str, Any]],
                       vpc_id: str) -> dict[str, Any]:
    return {"arn": arn("ec2", region, f"security-group/{group_id}"), "description": "Managed by Terraform",
            "egress": [sg_rule("-1", 0, 0, ["0.0.0.0/0"])], "id": group_id, "ingress": ingress, "name": name,
            "name_prefix": "", "owner_id": ACCOUNT, "revoke_rules_on_delete": False, "tags": {}, "tags_all": {},
            "timeouts": None, "vpc_id": vpc_id}


def aws_s3_bucket(name: str, region: str) -> dict[str, Any]:
    return {"acceleration_status": "", "acl": None, "arn": f"arn:aws:s3:::{name}", "bucket": name,
            "bucket_domain_name": f"{name}.s3.amazonaws.com", "bucket_prefix": "", "force_destroy": False,
            "hosted_zone_id": "Z3AQBSTGFYJSTF", "id": name, "object_lock_enabled": False, "policy": "",
            "region": region, "request_payer": "BucketOwner", "tags": {}, "tags_all": {},
            "versioning": [{"enabled": False, "mfa_delete": False}]}


def aws_lambda_function(name: str, region: str, runtime: str, memory: int, timeout: int, role: str,
                        **extra: Any) -> dict[str, Any]:
    return {"architectures": ["x86_64"], "arn": arn("lambda", region, f"function:{name}"),
            "environment": [], "filename": "build/handler.zip", "function_name": name,
            "handler": "handler.main", "id": name, "memory_size": memory, "package_type": "Zip",
            "publish": False, "role": role, "runtime": runtime, "source_code_hash": "abc=",
            "tags": {}, "tags_all": {}, "timeout": timeout, **extra}


def aws_iam_role(name: str) -> dict[str, Any]:
    return {"arn": f"arn:aws:iam::{ACCOUNT}:role/{name}", "assume_role_policy": json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "lambda.amazonaws.com"}}]}),
            "description": "", "force_detach_policies": False, "id": name, "managed_policy_arns": [],
            "max_session_duration": 3600, "name": name, "name_prefix": "", "path": "/", "tags": {},
            "tags_all": {}, "unique_id": "AROA" + name.upper()[:12]}


def aws_db_instance(identifier: str, region: str, instance_class: str, password: str) -> dict[str, Any]:
    return {"allocated_storage": 20, "arn": arn("rds", region, f"db:{identifier}"), "db_name": "app",
            "engine": "postgres", "engine_version": "16.3", "id": "db-" + identifier.upper().replace("-", "")[:20],
            "identifier": identifier, "instance_class": instance_class, "password": password,
            "resource_id": "db-" + identifier.upper().replace("-", "")[:20], "username": "app"}


def aws_sqs_queue(name: str, region: str) -> dict[str, Any]:
    return {"arn": arn("sqs", region, name), "id": f"https://sqs.{region}.amazonaws.com/{ACCOUNT}/{name}",
            "name": name, "url": f"https://sqs.{region}.amazonaws.com/{ACCOUNT}/{name}",
            "visibility_timeout_seconds": 30}


def aws_dynamodb_table(name: str, region: str) -> dict[str, Any]:
    return {"arn": arn("dynamodb", region, f"table/{name}"), "billing_mode": "PAY_PER_REQUEST", "hash_key": "id",
            "id": name, "name": name}


def aws_redshift_cluster(identifier: str, region: str, password: str) -> dict[str, Any]:
    return {"arn": arn("redshift", region, f"cluster:{identifier}"), "cluster_identifier": identifier,
            "id": identifier, "master_password": password, "master_username": "admin", "node_type": "ra3.xlplus",
            "number_of_nodes": 1}


def pulumi_checkpoint(project: str, stack: str, resources: list[dict[str, Any]]) -> bytes:
    """A DIY backend checkpoint: a stack resource, the default AWS provider, then `resources`
    (each `{type, name, id, outputs}`; `external` marks a read resource)."""
    prefix = f"urn:pulumi:{stack}::{project}"
    stack_urn = f"{prefix}::pulumi:pulumi:Stack::{project}-{stack}"
    provider_urn = f"{prefix}::pulumi:providers:aws::default_6_54_0"
    entries: list[dict[str, Any]] = [
        {"urn": stack_urn, "custom": False, "type": "pulumi:pulumi:Stack", "created": "2026-10-01T09:00:00Z",
         "modified": "2026-10-01T09:00:00Z"},
        {"urn": provider_urn, "custom": True, "id": str(uuid.uuid4()), "type": "pulumi:providers:aws",
         "inputs": {"region": "us-east-1", "version": "6.54.0"}, "outputs": {"region": "us-east-1",
                                                                             "version": "6.54.0"}},
    ]
    for r in resources:
        entries.append({
            "urn": f"{prefix}::{r['type']}::{r['name']}", "custom": True, "id": r["id"], "type": r["type"],
            "inputs": r.get("inputs", {}), "outputs": r["outputs"], "parent": stack_urn,
            "provider": f"{provider_urn}::{uuid.uuid4()}", "propertyDependencies": {},
            **({"external": True} if r.get("external") else {}),
            "created": "2026-10-01T09:00:00Z", "modified": "2026-10-01T09:00:00Z"})
    document = {"version": 3, "checkpoint": {
        "stack": f"organization/{project}/{stack}",
        "latest": {
            "manifest": {"time": "2026-10-01T09:00:00.000000000Z", "magic": uuid.uuid4().hex, "version": "v3.137.0"},
            "secrets_providers": {"type": "passphrase", "state": {"salt": "v1:abc:v1:def:ghi"}},
            "resources": entries,
            "metadata": {}}}}
    return json.dumps(document, indent=4).encode()


def lock_info(path: str, who: str, operation: str, created: datetime, version: str = "1.9.8") -> str:
    """The Info JSON Terraform stores with a lock (Go's LockInfo, RFC 3339 nanosecond time)."""
    stamp = created.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"
    return json.dumps({"ID": str(uuid.uuid4()), "Operation": operation, "Info": "", "Who": who,
                       "Version": version, "Created": stamp, "Path": path}, separators=(",", ":"))


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def put_state(s3: Any, ddb: Any | None, bucket: str, key: str, body: bytes, table: str | None = None,
              digest: str | None = None) -> None:
    """Write a state as the S3 backend does: the object, then (with a lock table) its digest."""
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    if ddb is not None and table:
        ddb.put_item(TableName=table, Item={"LockID": {"S": f"{bucket}/{key}-md5"},
                                            "Digest": {"S": digest or md5(body)}})


def lock_table(ddb: Any, name: str, tags: dict[str, str] | None = None) -> None:
    """A lock table as the Terraform docs declare it (hash key LockID, string)."""
    ddb.create_table(TableName=name, KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST",
                     Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()])
