"""What infrastructure-as-code manages: state backends, and the managed set read from state files.

Pure decoding, no I/O: `parse_terraform` reads a Terraform state (format version 4),
`parse_pulumi` a Pulumi checkpoint (the DIY backend's `.pulumi/stacks/<project>/<stack>.json`),
`cloudformation_resource` one `ListStackResources` entry. Each yields `Managed` records of the
resource kinds the drift job compares, named by their Terraform type (one vocabulary for the
three tools), with only the attributes compared. A state holds secrets in plain text: nothing
here keeps an attribute value beyond those few, and errors never quote a state's contents.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rules.config import Explained

TERRAFORM_SUFFIX = ".tfstate"
PULUMI_STACKS = ".pulumi/stacks/"
TERRAFORM_FORMAT = 4
PULUMI_FORMAT = 3

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_TABLE = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")


class StateBackend(BaseModel):
    """Where states live: a Terraform S3 backend (`bucket` + `key`, with its workspaces under
    `workspace_key_prefix`), or every state under `prefix` of a bucket (Terraform and Pulumi)."""

    model_config = ConfigDict(extra="forbid")

    bucket: str = Field(description="The S3 bucket holding the states.")
    key: str | None = Field(default=None, description=(
        "The Terraform backend's `key`: the default workspace's state; other workspaces live at "
        "`<workspace_key_prefix>/<workspace>/<key>`. Unset: every state under `prefix`."))
    workspace_key_prefix: str = Field(default="env:", description="The backend's `workspace_key_prefix`.")
    prefix: str = Field(default="", description="Without `key`: read every state whose key starts with this.")
    lock_table: str | None = Field(default=None, description="The backend's `dynamodb_table`, if it locks there.")
    use_lockfile: bool = Field(default=False, description="The backend locks with S3 lock files (`use_lockfile`).")

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if not _BUCKET.match(value):
            raise ValueError(f"`backends[].bucket`: {value!r} is not an S3 bucket name (like `acme-tfstate`); "
                             "give the bare name, without `s3://` or a path")
        return value

    @field_validator("lock_table")
    @classmethod
    def _table(cls, value: str | None) -> str | None:
        if value is not None and not _TABLE.match(value):
            raise ValueError(f"`backends[].lock_table`: {value!r} is not a DynamoDB table name "
                             "(3-255 letters, digits, `_`, `-` or `.`)")
        return value

    @model_validator(mode="after")
    def _key(self) -> StateBackend:
        if self.key is not None and (not self.key or self.key.startswith("/") or self.key.endswith("/")):
            raise ValueError(f"`backends[].key`: {self.key!r} must be an object key like `app/terraform.tfstate` "
                             "(no leading or trailing `/`); to read a whole folder, set `prefix` instead")
        if self.key is not None and self.prefix:
            raise ValueError("`backends[]`: set either `key` (one Terraform backend and its workspaces) or "
                             "`prefix` (every state under it), not both")
        return self

    @property
    def label(self) -> str:
        return f"s3://{self.bucket}/{self.key or self.prefix}"

    def workspace_of(self, key: str) -> str | None:
        """The Terraform workspace a key is the state of under this backend, None if none
        (the rule Terraform's S3 backend lists its workspaces by)."""
        if self.key is None:
            return None
        if key == self.key:
            return "default"
        head = f"{self.workspace_key_prefix}/" if self.workspace_key_prefix else ""
        if not key.startswith(head):
            return None
        workspace, _, rest = key[len(head):].partition("/")
        return workspace if workspace and rest == self.key else None

    @property
    def listing_prefixes(self) -> list[str]:
        """The key prefixes whose listing finds every state of this backend."""
        if self.key is None:
            return [self.prefix]
        return [self.key, f"{self.workspace_key_prefix}/" if self.workspace_key_prefix else ""]


def state_kind(key: str) -> Literal["terraform", "pulumi"] | None:
    """What a key holds, judged by its name as the tools write them; None: not a state."""
    if key.endswith(TERRAFORM_SUFFIX):
        return "terraform"
    # `<project>/<stack>.json` (or the legacy `<stack>.json`), maybe gzipped; `.json.bak` are backups.
    if PULUMI_STACKS in f"/{key}" and key.endswith((".json", ".json.gz")):
        return "pulumi"
    return None


@dataclass(frozen=True)
class StateObject:
    """A state file found in S3 (where and what, never its contents)."""

    bucket: str
    key: str
    kind: str  # terraform | pulumi
    size: int
    last_modified: Any  # datetime
    etag: str = ""
    region: str = ""  # the bucket's region, when known
    backend: str = ""  # the configured backend that names it; "" = found by discovery
    workspace: str = ""

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


# --- the managed set ---------------------------------------------------------------------

# The kinds compared with the account, by Terraform type; other types in a state are counted only.
# Companion types carry attributes of a parent (a bucket's versioning, a group's rules).
KINDS = ("aws_instance", "aws_ebs_volume", "aws_security_group", "aws_s3_bucket", "aws_lambda_function",
         "aws_iam_role", "aws_db_instance", "aws_redshift_cluster", "aws_sqs_queue", "aws_dynamodb_table")
GLOBAL_KINDS = {"aws_s3_bucket", "aws_iam_role"}  # no region in their identity

_TERRAFORM_TYPES = {k: k for k in KINDS} | {"aws_rds_cluster_instance": "aws_db_instance"}
_PULUMI_TYPES = {
    "aws:ec2/instance:Instance": "aws_instance",
    "aws:ebs/volume:Volume": "aws_ebs_volume",
    "aws:ec2/securityGroup:SecurityGroup": "aws_security_group",
    "aws:ec2/securityGroupRule:SecurityGroupRule": "aws_security_group_rule",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": "aws_vpc_security_group_ingress_rule",
    "aws:s3/bucket:Bucket": "aws_s3_bucket",
    "aws:s3/bucketV2:BucketV2": "aws_s3_bucket",
    "aws:s3/bucketVersioning:BucketVersioning": "aws_s3_bucket_versioning",
    "aws:s3/bucketVersioningV2:BucketVersioningV2": "aws_s3_bucket_versioning",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": "aws_s3_bucket_public_access_block",
    "aws:lambda/function:Function": "aws_lambda_function",
    "aws:iam/role:Role": "aws_iam_role",
    "aws:rds/instance:Instance": "aws_db_instance",
    "aws:rds/clusterInstance:ClusterInstance": "aws_db_instance",
    "aws:redshift/cluster:Cluster": "aws_redshift_cluster",
    "aws:sqs/queue:Queue": "aws_sqs_queue",
    "aws:dynamodb/table:Table": "aws_dynamodb_table",
}
_CLOUDFORMATION_TYPES = {
    "AWS::EC2::Instance": "aws_instance", "AWS::EC2::Volume": "aws_ebs_volume",
    "AWS::EC2::SecurityGroup": "aws_security_group", "AWS::S3::Bucket": "aws_s3_bucket",
    "AWS::Lambda::Function": "aws_lambda_function", "AWS::IAM::Role": "aws_iam_role",
    "AWS::RDS::DBInstance": "aws_db_instance", "AWS::Redshift::Cluster": "aws_redshift_cluster",
    "AWS::SQS::Queue": "aws_sqs_queue", "AWS::DynamoDB::Table": "aws_dynamodb_table",
}
COMPANIONS = {"aws_security_group_rule", "aws_vpc_security_group_ingress_rule", "aws_s3_bucket_versioning",
              "aws_s3_bucket_public_access_block"}

# The attribute holding the id the account knows a resource by, when it is not `id`.
_NATIVE_ID = {"aws_s3_bucket": ("bucket",), "aws_lambda_function": ("function_name", "name"),
              "aws_iam_role": ("name",), "aws_db_instance": ("identifier",),
              "aws_redshift_cluster": ("cluster_identifier",), "aws_sqs_queue": ("name",),
              "aws_dynamodb_table": ("name",)}


@dataclass(frozen=True)
class Managed:
    """One resource (or one companion of it) that a state or stack manages."""

    kind: str  # a Terraform type from KINDS
    native_id: str
    source: str  # s3://bucket/key of the state, or cloudformation:<stack>
    address: str  # module.x.aws_instance.web["a"], a Pulumi URN's name, a stack's logical id
    tool: str  # terraform | pulumi | cloudformation
    account: str = ""  # "" when the state does not say
    region: str = ""
    attrs: tuple[tuple[str, Any], ...] = ()  # only the compared attributes
    companion: bool = False  # adds attributes to `kind`/`native_id` managed elsewhere
    deposed: bool = False  # a Terraform object awaiting destruction: managed, never "missing"

    @property
    def where(self) -> str:
        return f"{self.source}#{self.address}"


@dataclass
class ParsedState:
    """What a state says, reduced to what the jobs compare."""

    resources: list[Managed] = field(default_factory=list)
    managed_count: int = 0  # every managed resource instance, of any type
    data_sources: int = 0
    version: str = ""  # the tool version that wrote it


class StateError(Explained, ValueError):
    """A state that cannot be read as what it claims to be; the message never quotes its contents."""


def decode(raw: bytes, key: str) -> Any:
    """A state file's JSON (gunzipped for Pulumi's `.json.gz`)."""
    if key.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise StateError(f"not a gzip file ({type(exc).__name__})") from None
    if not raw.strip():
        raise StateError("the file is empty")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        # Position only: the message must not carry the text around it.
        raise StateError(f"not valid JSON at byte {exc.pos} of {len(raw)} (truncated or corrupted?)") from None


def _arn(value: Any) -> tuple[str, str]:
    """(account, region) from an ARN; empty strings where it has none."""
    if isinstance(value, str) and value.startswith("arn:"):
        parts = value.split(":", 5)
        if len(parts) == 6:
            return parts[4], parts[3]
    return "", ""


def _first(value: Any) -> Any:
    """A nested block: Terraform keeps a list of one object, Pulumi the object itself."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _strs(values: Any) -> list[str]:
    return [str(v) for v in values or [] if v not in (None, "")]


PROTOCOLS = {"6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6", "all": "-1"}


def ingress_rule(protocol: Any, from_port: Any, to_port: Any, sources: list[str]) -> list[str]:
    """A security-group rule as comparable strings, one per source: `tcp 443-443 10.0.0.0/8`."""
    proto = PROTOCOLS.get(str(protocol).lower(), str(protocol).lower())
    ports = "all" if proto == "-1" else f"{from_port if from_port is not None else ''}-{to_port if to_port is not None else ''}"
    return [f"{proto} {ports} {s}" for s in sorted(set(sources))]


def _terraform_rules(rule: Mapping[str, Any], group_id: str = "") -> list[str]:
    sources = _strs(rule.get("cidr_blocks")) + _strs(rule.get("ipv6_cidr_blocks")) \
        + _strs(rule.get("prefix_list_ids")) + _strs(rule.get("security_groups"))
    for single in ("cidr_ipv4", "cidr_ipv6", "prefix_list_id", "referenced_security_group_id",
                   "source_security_group_id"):
        sources += _strs([rule.get(single)])
    if rule.get("self") and group_id:
        sources.append(group_id)
    return ingress_rule(rule.get("protocol", rule.get("ip_protocol")), rule.get("from_port"),
                        rule.get("to_port"), sources)


def _versioning(attrs: Mapping[str, Any]) -> str | None:
    config = _first(attrs.get("versioning_configuration"))
    if isinstance(config, Mapping) and config.get("status"):
        return str(config["status"])
    legacy = _first(attrs.get("versioning"))
    if isinstance(legacy, Mapping) and "enabled" in legacy:
        return "Enabled" if legacy["enabled"] else None  # false: never enabled, or suspended
    return None


PAB_FLAGS = ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")


def _compared(kind: str, attrs: Mapping[str, Any], native_id: str) -> tuple[tuple[str, Any], ...]:
    """The attributes drift is judged on, normalized so the account's answer compares equal."""
    out: list[tuple[str, Any]] = []
    if kind == "aws_instance":
        out.append(("instance_type", attrs.get("instance_type")))
    elif kind == "aws_ebs_volume":
        out += [("size", attrs.get("size")), ("type", attrs.get("type"))]
    elif kind == "aws_security_group" and isinstance(attrs.get("ingress"), list):
        rules: list[str] = []
        for rule in attrs["ingress"]:
            rules += _terraform_rules(rule, native_id)
        out.append(("ingress", tuple(sorted(set(rules)))))
    elif kind == "aws_lambda_function":
        out += [("runtime", attrs.get("runtime")), ("memory_size", attrs.get("memory_size")),
                ("timeout", attrs.get("timeout")), ("role", attrs.get("role"))]
    elif kind == "aws_s3_bucket":
        versioning = _versioning(attrs)
        if versioning:
            out.append(("versioning", versioning))
    return tuple((k, v) for k, v in out if v is not None)


def _companion(tf_type: str, attrs: Mapping[str, Any]) -> tuple[str, str, tuple[tuple[str, Any], ...]] | None:
    """(parent kind, parent id, attributes) of a companion resource."""
    if tf_type == "aws_security_group_rule":
        if attrs.get("type") != "ingress":
            return None
        group = str(attrs.get("security_group_id") or "")
        return "aws_security_group", group, (("ingress", tuple(_terraform_rules(attrs, group))),)
    if tf_type == "aws_vpc_security_group_ingress_rule":
        group = str(attrs.get("security_group_id") or "")
        return "aws_security_group", group, (("ingress", tuple(_terraform_rules(attrs, group))),)
    if tf_type == "aws_s3_bucket_versioning":
        status = _versioning(attrs)
        return "aws_s3_bucket", str(attrs.get("bucket") or ""), ((("versioning", status),) if status else ())
    if tf_type == "aws_s3_bucket_public_access_block":
        flags = tuple(bool(attrs.get(f)) for f in PAB_FLAGS)
        return "aws_s3_bucket", str(attrs.get("bucket") or ""), (("public_access_block", flags),)
    return None


def _native_id(kind: str, attrs: Mapping[str, Any], fallback: Any) -> str:
    for name in _NATIVE_ID.get(kind, ()):
        if attrs.get(name):
            return str(attrs[name])
    if kind == "aws_sqs_queue" and isinstance(fallback, str):
        return fallback.rstrip("/").rsplit("/", 1)[-1]  # the id is the queue URL
    return str(attrs.get("id") or fallback or "")


def _launch_volumes(attrs: Mapping[str, Any]) -> list[str]:
    """Volumes an instance was launched with: managed as part of it."""
    blocks = attrs.get("root_block_device") or []
    blocks = ([blocks] if isinstance(blocks, Mapping) else list(blocks)) + list(attrs.get("ebs_block_device") or [])
    return [str(b["volume_id"]) for b in blocks if isinstance(b, Mapping) and b.get("volume_id")]


def _records(kind_of: str, kind: str | None, attrs: Mapping[str, Any], fallback_id: Any, source: str,
             address: str, tool: str, deposed: bool) -> Iterator[Managed]:
    account, region = _arn(attrs.get("arn"))
    if not region and attrs.get("region"):
        region = str(attrs["region"])
    if not region and isinstance(attrs.get("availability_zone"), str) and attrs["availability_zone"]:
        region = attrs["availability_zone"][:-1]
    if kind in KINDS:
        native = _native_id(kind, attrs, fallback_id)
        if not native:
            return
        yield Managed(kind, native, source, address, tool, account, region,
                      _compared(kind, attrs, native), deposed=deposed)
        if kind == "aws_instance":
            for volume in _launch_volumes(attrs):
                yield Managed("aws_ebs_volume", volume, source, address, tool, account, region,
                              companion=True, deposed=deposed)
        return
    companion = _companion(kind_of, attrs)
    if companion and companion[1]:
        parent, parent_id, compared = companion
        yield Managed(parent, parent_id, source, address, tool, account, region, compared, companion=True)


def _fill_account(parsed: ParsedState) -> None:
    """A record whose ARN names no account (S3 buckets, resources without `arn`) belongs to the
    account the rest of its state is in: states are written per provider, mostly one account."""
    accounts = Counter(r.account for r in parsed.resources if r.account)
    if not accounts:
        return
    main = accounts.most_common(1)[0][0]
    parsed.resources = [r if r.account else _replace(r, account=main) for r in parsed.resources]


def _replace(record: Managed, **changes: Any) -> Managed:
    return Managed(**{**record.__dict__, **changes})


def instance_address(resource: Mapping[str, Any], index_key: Any) -> str:
    """The address Terraform shows: `module.net.aws_instance.web["a"]`, `aws_instance.web[0]`."""
    base = f"{resource['type']}.{resource['name']}"
    if resource.get("mode") == "data":
        base = f"data.{base}"
    if resource.get("module"):
        base = f"{resource['module']}.{base}"
    if index_key is None:
        return base
    return f"{base}[{json.dumps(index_key)}]"


def parse_terraform(document: Any, source: str) -> ParsedState:
    """The managed set of a Terraform state, format version 4 (Terraform 0.12 onwards)."""
    if not isinstance(document, dict):
        raise StateError("not a Terraform state (the document is not a JSON object)")
    version = document.get("version")
    if version != TERRAFORM_FORMAT:
        raise StateError(f"state format version {version!r} is not supported (only {TERRAFORM_FORMAT}, "
                         "written by Terraform 0.12 and later; `terraform state pull | terraform state push` "
                         "with a current Terraform upgrades it)")
    resources = document.get("resources")
    if not isinstance(resources, list):
        raise StateError("not a Terraform state (no `resources` list)")
    parsed = ParsedState(version=str(document.get("terraform_version", "")))
    for resource in resources:
        if not isinstance(resource, dict) or "type" not in resource or "instances" not in resource:
            raise StateError("a resource entry lacks `type` or `instances`")
        if resource.get("mode") == "data":
            parsed.data_sources += 1
            continue
        tf_type = resource["type"]
        kind = _TERRAFORM_TYPES.get(tf_type)
        for instance in resource["instances"] or []:
            parsed.managed_count += 1
            attrs = instance.get("attributes")
            if attrs is None:  # a legacy state upgraded from 0.11: flat attributes, ids only
                flat = instance.get("attributes_flat") or {}
                attrs = {k: v for k, v in flat.items() if "." not in k}
            address = instance_address(resource, instance.get("index_key"))
            parsed.resources += _records(tf_type, kind, attrs, attrs.get("id"), source, address, "terraform",
                                         bool(instance.get("deposed")))
    _fill_account(parsed)
    return parsed


_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def snake(value: Any) -> Any:
    """Pulumi's camelCase properties as Terraform's snake_case (the AWS provider is bridged from it)."""
    if isinstance(value, dict):
        return {_CAMEL.sub(r"_\1", k).lower(): snake(v) for k, v in value.items()}
    if isinstance(value, list):
        return [snake(v) for v in value]
    return value


def parse_pulumi(document: Any, source: str) -> ParsedState:
    """The managed set of a Pulumi checkpoint (version 3): custom resources the stack owns;
    providers, components and `external` (read) resources are not managed by it."""
    if not isinstance(document, dict) or "checkpoint" not in document:
        raise StateError("not a Pulumi checkpoint (no `checkpoint` object)")
    version = document.get("version")
    if version != PULUMI_FORMAT:
        raise StateError(f"checkpoint version {version!r} is not supported (only {PULUMI_FORMAT}, written by "
                         "Pulumi 1.0 and later)")
    latest = (document.get("checkpoint") or {}).get("latest") or {}
    parsed = ParsedState(version=str((latest.get("manifest") or {}).get("version", "")))
    for resource in latest.get("resources") or []:
        if not isinstance(resource, dict) or "urn" not in resource or "type" not in resource:
            raise StateError("a resource entry lacks `urn` or `type`")
        if not resource.get("custom") or resource["type"].startswith("pulumi:"):
            continue
        if resource.get("external"):
            parsed.data_sources += 1
            continue
        if resource.get("delete"):  # replaced, awaiting deletion
            continue
        parsed.managed_count += 1
        tf_type = _PULUMI_TYPES.get(resource["type"], "")
        kind = tf_type if tf_type in KINDS else None
        if not tf_type:
            continue
        outputs = snake(resource.get("outputs") or resource.get("inputs") or {})
        address = str(resource["urn"]).rsplit("::", 1)[-1]
        parsed.resources += _records(tf_type, kind, outputs, resource.get("id"), source, address, "pulumi", False)
    _fill_account(parsed)
    return parsed


def parse_state(raw: bytes, obj: StateObject) -> ParsedState:
    document = decode(raw, obj.key)
    return (parse_terraform if obj.kind == "terraform" else parse_pulumi)(document, obj.uri)


def cloudformation_resource(resource_type: str, physical_id: str, stack: str, logical_id: str,
                            account: str, region: str) -> Managed | None:
    """A stack resource of a compared kind (ListStackResources), else None."""
    kind = _CLOUDFORMATION_TYPES.get(resource_type)
    if kind is None or not physical_id:
        return None
    if kind == "aws_sqs_queue":  # the physical id is the queue URL
        physical_id = physical_id.rstrip("/").rsplit("/", 1)[-1]
    return Managed(kind, physical_id, f"cloudformation:{stack}", logical_id, "cloudformation", account, region)
