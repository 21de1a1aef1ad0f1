"""IaC I/O: state files in S3, Terraform lock tables in DynamoDB, CloudFormation stacks, and the
one lock remover.

Listings page with the one paginator under page budgets. A state's bytes are read only to parse
it (`read_state`) or to compare its MD5 with the lock table's digest (`state_md5`, which uses the
ETag where it is the MD5); they are never logged, stored or returned beyond the caller.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError
from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.store import OpsStore
from rules.config import opted_out
from rules.iac_health import (
    DIGEST_SUFFIX,
    LOCKFILE_SUFFIX,
    BucketSettings,
    Lock,
    LockTable,
    Stack,
    StateSearch,
    parse_lock_info,
)
from rules.iac_state import Managed, StateBackend, StateObject, cloudformation_resource, state_kind
from tasks.aws.actions import Outcome
from tasks.aws.clients import Account, PageCounter, error_summary, paginate
from tasks.aws.permissions import requires

# Bucket names that suggest states: listed first when discovering within a page budget.
STATE_BUCKET_HINTS = ("tfstate", "terraform", "state", "pulumi", "iac")
LIVE_STACK_STATUSES = [  # every ListStacks status except DELETE_COMPLETE
    "CREATE_IN_PROGRESS", "CREATE_FAILED", "CREATE_COMPLETE", "ROLLBACK_IN_PROGRESS", "ROLLBACK_FAILED",
    "ROLLBACK_COMPLETE", "DELETE_IN_PROGRESS", "DELETE_FAILED", "UPDATE_IN_PROGRESS",
    "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_COMPLETE", "UPDATE_FAILED", "UPDATE_ROLLBACK_IN_PROGRESS",
    "UPDATE_ROLLBACK_FAILED", "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_ROLLBACK_COMPLETE",
    "REVIEW_IN_PROGRESS", "IMPORT_IN_PROGRESS", "IMPORT_COMPLETE", "IMPORT_ROLLBACK_IN_PROGRESS",
    "IMPORT_ROLLBACK_FAILED", "IMPORT_ROLLBACK_COMPLETE",
]


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


@dataclass
class StateListing:
    """The states an account's buckets (and the configured backends) hold, found by key."""

    states: list[StateObject] = field(default_factory=list)
    lock_files: list[StateObject] = field(default_factory=list)  # `<state>.tflock` objects
    empty: list[str] = field(default_factory=list)  # configured backends holding no state
    errors: dict[str, str] = field(default_factory=dict)  # s3://bucket/prefix -> why it was not listed
    truncated: list[str] = field(default_factory=list)  # listings the page budget ended
    unscanned: int = 0  # buckets discovery did not reach
    pages: int = 0


@requires("s3:ListAllMyBuckets", "s3:GetBucketLocation")
def bucket_regions(account: Account) -> dict[str, str]:
    """Every bucket of the account and its region."""
    s3 = account.client("s3")
    regions = {}
    for b in s3.list_buckets()["Buckets"]:
        region = b.get("BucketRegion") or s3.get_bucket_location(Bucket=b["Name"]).get("LocationConstraint")
        regions[b["Name"]] = region or "us-east-1"  # GetBucketLocation answers None for us-east-1
    return regions


def _discovery_order(names: Iterable[str]) -> list[str]:
    return sorted(names, key=lambda n: (not any(h in n.lower() for h in STATE_BUCKET_HINTS), n))


@requires("s3:ListBucket")
def find_states(account: Account, regions: dict[str, str], backends: Sequence[StateBackend], search: StateSearch,
                owned_only: bool) -> StateListing:
    """States of the configured backends (only those in the account's own buckets when
    `owned_only`) and, with discovery on, those found by key in the account's buckets."""
    found = StateListing()
    seen: set[tuple[str, str]] = set()

    def add(bucket: str, obj: dict[str, Any], kind: str, backend: str = "", workspace: str = "") -> None:
        if (bucket, obj["Key"]) in seen:
            return
        seen.add((bucket, obj["Key"]))
        record = StateObject(bucket, obj["Key"], kind, int(obj.get("Size", 0)), obj.get("LastModified"),
                             str(obj.get("ETag", "")).strip('"'), regions.get(bucket, ""), backend, workspace)
        (found.lock_files if kind == "lock" else found.states).append(record)

    for backend in backends:
        if owned_only and backend.bucket not in regions:
            continue
        before = len(found.states)
        for prefix in backend.listing_prefixes:
            counter = PageCounter()
            s3 = account.client("s3", regions.get(backend.bucket))
            try:
                for obj in paginate(s3, "list_objects_v2", "Contents", counter=counter,
                                    max_pages=search.backend_max_pages, Bucket=backend.bucket, Prefix=prefix):
                    key = obj["Key"]
                    if key.endswith(LOCKFILE_SUFFIX):
                        base = key[: -len(LOCKFILE_SUFFIX)]
                        if backend.workspace_of(base) or (backend.key is None and base.startswith(backend.prefix)):
                            add(backend.bucket, obj, "lock", backend.label)
                        continue
                    if backend.key is not None:  # the key need not end in .tfstate
                        if workspace := backend.workspace_of(key):
                            add(backend.bucket, obj, "terraform", backend.label, workspace)
                    elif kind := state_kind(key):
                        add(backend.bucket, obj, kind, backend.label)
            except Exception as exc:  # one backend failing leaves the others
                found.errors[f"s3://{backend.bucket}/{prefix}"] = error_summary(exc)
            found.pages += counter.pages
            if counter.truncated:
                found.truncated.append(f"s3://{backend.bucket}/{prefix}")
        if len(found.states) == before and not any(k.startswith(f"s3://{backend.bucket}/") for k in found.errors):
            found.empty.append(backend.label)

    if not search.discover_states:
        return found
    budget = search.discovery_max_pages
    order = _discovery_order(regions)
    for n, bucket in enumerate(order):
        if budget <= 0:
            found.unscanned = len(order) - n
            break
        counter = PageCounter()
        try:
            for obj in paginate(account.client("s3", regions[bucket]), "list_objects_v2", "Contents",
                                counter=counter, max_pages=budget, Bucket=bucket):
                key = obj["Key"]
                if key.endswith(LOCKFILE_SUFFIX) and state_kind(key[: -len(LOCKFILE_SUFFIX)]) == "terraform":
                    add(bucket, obj, "lock")
                elif kind := state_kind(key):
                    add(bucket, obj, kind)
        except Exception as exc:
            found.errors[f"s3://{bucket}/"] = error_summary(exc)
        budget -= counter.pages
        found.pages += counter.pages
        if counter.truncated:
            found.truncated.append(f"s3://{bucket}/")
    return found


@requires("s3:GetObject")
def read_state(account: Account, obj: StateObject) -> bytes:
    """A state's bytes. Raises the S3 (or KMS) error: the caller reports it against the file."""
    return account.client("s3", obj.region or None).get_object(Bucket=obj.bucket, Key=obj.key)["Body"].read()


@requires("s3:GetObject")
def state_md5(account: Account, obj: StateObject) -> str:
    """The MD5 of a state's content: its ETag where S3 made that the MD5 (a single-part upload
    without KMS), else computed from the bytes."""
    s3 = account.client("s3", obj.region or None)
    head = s3.head_object(Bucket=obj.bucket, Key=obj.key)
    etag = str(head.get("ETag", "")).strip('"')
    if etag and "-" not in etag and not str(head.get("ServerSideEncryption", "")).startswith("aws:kms") \
            and not head.get("SSECustomerAlgorithm"):
        return etag
    return hashlib.md5(read_state(account, obj), usedforsecurity=False).hexdigest()


@requires("s3:GetAccountPublicAccessBlock")
def account_public_access_block(account: Account, account_id: str) -> tuple[bool, ...] | None:
    try:
        config = account.client("s3control").get_public_access_block(AccountId=account_id)
    except ClientError as exc:
        if _code(exc) == "NoSuchPublicAccessBlockConfiguration":
            return None
        raise
    c = config["PublicAccessBlockConfiguration"]
    return (bool(c.get("BlockPublicAcls")), bool(c.get("BlockPublicPolicy")), bool(c.get("IgnorePublicAcls")),
            bool(c.get("RestrictPublicBuckets")))


def _or_none(call: Any, missing: str, **kwargs: Any) -> Any:
    try:
        return call(**kwargs)
    except ClientError as exc:
        if _code(exc) == missing:
            return None
        raise


@requires("s3:GetBucketVersioning", "s3:GetEncryptionConfiguration", "s3:GetBucketPublicAccessBlock",
          "s3:GetLifecycleConfiguration", "s3:GetBucketTagging", "s3:ListBucketVersions")
def bucket_settings(account: Account, bucket: str, region: str, account_block: tuple[bool, ...] | None,
                    version_pages: int) -> BucketSettings:
    """A state bucket's versioning, default encryption, effective public access block, lifecycle
    rules, tags, and the bytes its noncurrent versions hold (within `version_pages`)."""
    s3 = account.client("s3", region)
    versioning = s3.get_bucket_versioning(Bucket=bucket).get("Status", "")
    encryption = _or_none(s3.get_bucket_encryption, "ServerSideEncryptionConfigurationNotFoundError", Bucket=bucket)
    rules = (encryption or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    algorithm = next((r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules
                      if r.get("ApplyServerSideEncryptionByDefault")), "")
    block = _or_none(s3.get_public_access_block, "NoSuchPublicAccessBlockConfiguration", Bucket=bucket)
    flags = None
    if block is not None or account_block is not None:
        c = (block or {}).get("PublicAccessBlockConfiguration", {})
        own = (bool(c.get("BlockPublicAcls")), bool(c.get("BlockPublicPolicy")), bool(c.get("IgnorePublicAcls")),
               bool(c.get("RestrictPublicBuckets")))
        flags = tuple(a or b for a, b in zip(own, account_block or (False,) * 4, strict=True))
    lifecycle = _or_none(s3.get_bucket_lifecycle_configuration, "NoSuchLifecycleConfiguration", Bucket=bucket)
    tagging = _or_none(s3.get_bucket_tagging, "NoSuchTagSet", Bucket=bucket)
    noncurrent_bytes, noncurrent, counter = None, 0, PageCounter()
    if versioning:
        noncurrent_bytes = 0
        for v in paginate(s3, "list_object_versions", "Versions", counter=counter, max_pages=version_pages,
                          Bucket=bucket):
            if not v.get("IsLatest"):
                noncurrent_bytes += int(v.get("Size", 0))
                noncurrent += 1
    return BucketSettings(
        bucket, region, versioning, algorithm, flags, tuple((lifecycle or {}).get("Rules", [])),
        {t["Key"]: t["Value"] for t in (tagging or {}).get("TagSet", [])},
        noncurrent_bytes, noncurrent, counter.truncated)


@dataclass
class LockTables:
    tables: list[LockTable] = field(default_factory=list)
    arns: dict[str, str] = field(default_factory=dict)


@requires("dynamodb:ListTables", "dynamodb:DescribeTable", "dynamodb:Scan", "dynamodb:ListTagsOfResource")
def lock_tables(account: Account, region: str, named: Iterable[str], hints: Sequence[str], opt_out_tag: str,
                max_pages: int = 100) -> list[LockTable]:
    """The Terraform lock tables of a region: those `named` (a missing one is returned with
    `exists=False`) and those whose name has a hint, if their hash key is `LockID`."""
    ddb = account.client("dynamodb", region)
    names = set(paginate(ddb, "list_tables", "TableNames"))
    named = set(named)
    candidates = sorted(n for n in names if n in named or any(h.lower() in n.lower() for h in hints))
    tables = [LockTable(n, region, exists=False) for n in sorted(named - names)]
    for name in candidates:
        described = ddb.describe_table(TableName=name)["Table"]
        if [k["AttributeName"] for k in described["KeySchema"]] != ["LockID"]:
            continue
        tags = {t["Key"]: t["Value"] for t in paginate(ddb, "list_tags_of_resource", "Tags",
                                                         ResourceArn=described["TableArn"])}
        keep = opted_out(tags, opt_out_tag)
        digests, locks, counter = {}, [], PageCounter()
        for item in paginate(ddb, "scan", "Items", counter=counter, max_pages=max_pages, TableName=name,
                             ProjectionExpression="LockID, Digest, Info"):
            lock_id = item["LockID"]["S"]
            if "Digest" in item and lock_id.endswith(DIGEST_SUFFIX):
                digests[lock_id[: -len(DIGEST_SUFFIX)]] = item["Digest"]["S"]
            elif "Info" in item:
                locks.append(Lock(lock_id, region, table=name, info=parse_lock_info(item["Info"]["S"]),
                                  opted_out=keep))
        tables.append(LockTable(name, region, True, digests, tuple(locks), counter.truncated))
    return tables


@requires("s3:GetObject", "s3:GetBucketTagging")
def read_lock_files(account: Account, files: Sequence[StateObject], opt_out_tag: str) -> list[Lock]:
    """The S3 lock files (`use_lockfile`) with their Info JSON; one gone since it was listed is dropped."""
    locks, kept = [], {}
    for f in files:
        s3 = account.client("s3", f.region or None)
        try:
            body = s3.get_object(Bucket=f.bucket, Key=f.key)["Body"].read()
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                continue  # released since the listing
            raise
        if f.bucket not in kept:
            tagging = _or_none(s3.get_bucket_tagging, "NoSuchTagSet", Bucket=f.bucket)
            kept[f.bucket] = opted_out({t["Key"]: t["Value"] for t in (tagging or {}).get("TagSet", [])}, opt_out_tag)
        locks.append(Lock(f"{f.bucket}/{f.key[: -len(LOCKFILE_SUFFIX)]}", f.region, lock_file=f.uri,
                          info=parse_lock_info(body), written=f.last_modified, opted_out=kept[f.bucket]))
    return locks


@requires("cloudformation:ListStacks")
def list_stacks(account: Account, region: str) -> list[Stack]:
    """Every stack of a region that is not deleted."""
    cfn = account.client("cloudformation", region)
    return [Stack(s["StackName"], region, s["StackStatus"], s["CreationTime"], s.get("LastUpdatedTime"),
                  s.get("StackStatusReason", ""))
            for s in paginate(cfn, "list_stacks", "StackSummaries", StackStatusFilter=LIVE_STACK_STATUSES)]


@requires("cloudformation:ListStackResources")
def stack_resources(account: Account, region: str, account_id: str, stacks: Sequence[Stack]
                    ) -> tuple[list[Managed], dict[str, str]]:
    """The resources of the compared kinds each stack manages (by physical id), and the stacks
    that could not be read."""
    cfn = account.client("cloudformation", region)
    managed, errors = [], {}
    for stack in stacks:
        if stack.status.startswith("DELETE_"):
            continue
        try:
            for r in paginate(cfn, "list_stack_resources", "StackResourceSummaries", StackName=stack.name):
                if r.get("ResourceStatus") == "DELETE_COMPLETE":
                    continue
                record = cloudformation_resource(r["ResourceType"], r.get("PhysicalResourceId", ""), stack.name,
                                                 r["LogicalResourceId"], account_id, region)
                if record:
                    managed.append(record)
        except Exception as exc:
            errors[stack.name] = error_summary(exc)
    return managed, errors


# --- the one lock remover -------------------------------------------------------------------

@requires("dynamodb:GetItem", "dynamodb:DeleteItem", "dynamodb:DescribeTable", "dynamodb:ListTagsOfResource",
          write=True)
def remove_table_lock(account: Account, lock: Lock, opt_out_tag: str, dry_run: bool = False) -> Outcome:
    """Delete a DynamoDB lock item, only if it is still the very lock the plan showed."""
    ddb = account.client("dynamodb", lock.region)
    key = {"LockID": {"S": lock.state_path}}
    item = ddb.get_item(TableName=lock.table, Key=key, ConsistentRead=True).get("Item")
    if not item or "Info" not in item:
        return Outcome("done", "already released")
    current = parse_lock_info(item["Info"]["S"])
    expected = lock.info.lock_id if lock.info else ""
    if current is None or current.lock_id != expected:
        return Outcome("skipped", "a new lock was taken since the plan")
    arn = ddb.describe_table(TableName=lock.table)["Table"]["TableArn"]
    tags = {t["Key"]: t["Value"] for t in paginate(ddb, "list_tags_of_resource", "Tags", ResourceArn=arn)}
    if opted_out(tags, opt_out_tag):
        return Outcome("skipped", f"table tagged {opt_out_tag}")
    if dry_run:
        return Outcome("dry-run", f"would remove lock {expected}")
    try:
        ddb.delete_item(TableName=lock.table, Key=key, ConditionExpression="Info = :info",
                        ExpressionAttributeValues={":info": item["Info"]})
    except ClientError as exc:
        if _code(exc) == "ConditionalCheckFailedException":
            return Outcome("skipped", "the lock changed while it was being removed")
        raise
    return Outcome("done", f"removed lock {expected} ({current.who or 'unknown'}, {current.operation or 'operation'})")


@requires("s3:GetObject", "s3:DeleteObject", "s3:GetBucketTagging", write=True)
def remove_lock_file(account: Account, lock: Lock, opt_out_tag: str, dry_run: bool = False) -> Outcome:
    """Delete an S3 lock file, only if it still holds the lock the plan showed."""
    bucket, _, key = lock.lock_file.removeprefix("s3://").partition("/")
    s3 = account.client("s3", lock.region or None)
    try:
        current = parse_lock_info(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as exc:
        if _code(exc) in ("NoSuchKey", "404"):
            return Outcome("done", "already released")
        raise
    expected = lock.info.lock_id if lock.info else ""
    if current is None or current.lock_id != expected:
        return Outcome("skipped", "a new lock was taken since the plan")
    tagging = _or_none(s3.get_bucket_tagging, "NoSuchTagSet", Bucket=bucket)
    if opted_out({t["Key"]: t["Value"] for t in (tagging or {}).get("TagSet", [])}, opt_out_tag):
        return Outcome("skipped", f"bucket tagged {opt_out_tag}")
    if dry_run:
        return Outcome("dry-run", f"would remove lock {expected}")
    s3.delete_object(Bucket=bucket, Key=key)
    return Outcome("done", f"removed lock {expected} ({current.who or 'unknown'}, {current.operation or 'operation'})")


@task(name="remove-stale-locks", cache_policy=NO_CACHE)
@requires(write=True)  # each remover declares what it calls
def remove_locks(account: Account, locks: Sequence[Lock], scope: str, job: str, store: OpsStore, opt_out_tag: str,
                 now: datetime, flow_run_id: str | None = None, dry_run: bool = False) -> list[dict[str, Any]]:
    """Remove the approved stale locks of one target; each outcome is recorded, one failure
    does not stop the rest."""
    rows = []
    for lock in locks:
        try:
            remover = remove_lock_file if lock.lock_file else remove_table_lock
            outcome = remover(account, lock, opt_out_tag, dry_run)
        except Exception as exc:
            outcome = Outcome("failed", error_summary(exc))
        store.record_action(job, action="remove-stale-lock", resource_id=lock.resource_id, scope=scope,
                            dry_run=dry_run, outcome=outcome.status, detail=outcome.detail,
                            flow_run_id=flow_run_id, now=now)
        rows.append({"resource": lock.resource_id, "action": "remove-stale-lock", "scope": scope,
                     "outcome": outcome.status, "detail": outcome.detail})
    return rows
