"""Least privilege, proven with moto's IAM enforcement, for every flow that calls AWS: run with a
user holding exactly the policy `deployments/iam.py` generates for it, the flow finds what an
unrestricted run finds and (action flows) really changes the resources; one permission short,
the run names the missing permission.

moto 5.2.5 gaps, bridged here and nowhere else (`iam_user_with`):
- it checks CloudWatch and Resource Groups Tagging calls under their signing names
  (`monitoring:`, `tagging:`) instead of the IAM prefixes `cloudwatch:` and `tag:`, and a PUT of a
  bucket's Intelligent-Tiering configuration as `s3:CreateBucket`: the user is granted each
  generated action under the name moto checks too (`moto_names`), and a denial names moto's name;
- it cannot verify the SigV4 signature of Lambda's REST calls (SignatureDoesNotMatch for every
  user): the signature check is skipped for Lambda only; authorization is still checked;
- it never checks sts:GetCallerIdentity (nor does AWS), reads S3 inventory configurations under
  s3:ListBucket, and implements neither the Pricing API nor Redshift Serverless GetCredentials:
  those permissions are declared but not proven here.

query-watch reaches AWS only for a Redshift block with IAM auth: moto hands out the database user
`IAM:<user>`, which the local PostgreSQL (trust auth) lets in as a role of that name. data-integrity
gets its credentials through the same `WarehouseConnection` code and is not run here.
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import ModuleType
from typing import Any

import boto3
import psycopg
import pytest
from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.iam.access_control import IAMRequest
from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect_aws import AwsCredentials

import flows.dev_parking
import flows.ebs_rightsizing
import flows.graviton_advisor
import flows.idle_resources
import flows.lambda_health
import flows.query_watch
import flows.queue_health
import flows.redshift_health
import flows.s3_intelligent_tiering
from blocks.store import OpsStore
from deployments.iam import flow_actions, policy_document
from rules.parking import ParkingPolicy
from rules.query_watch import QueryWatchPolicy, blocker_resource_id
from rules.tiering import TieringPolicy
from tasks.aws.permissions import permissions_of
from tests.approvals import run_and_answer
from tests.idle import test_idle_flow as idle
from tests.redshift_fixture import (
    Session,
    active_for,
    load_redshift_views,
    wait_until,
    warehouse_block,
)
from tests.test_dev_parking import WED_NIGHT, _states, planted  # noqa: F401 - a fixture
from tests.test_ebs_rightsizing import planted_volumes  # noqa: F401 - a fixture
from tests.test_graviton_advisor import planted_x86  # noqa: F401 - a fixture
from tests.test_lambda_health import UNHEALTHY, plant_unhealthy_functions
from tests.test_query_watch import FAST, T0
from tests.test_queue_health import BACKLOGGED, plant_queues
from tests.test_redshift_health import busy_cluster_findings, plant_busy_cluster
from tests.test_s3_intelligent_tiering import planted_buckets  # noqa: F401 - a fixture

# The names moto checks instead of the IAM ones (see the module docstring).
pytestmark = pytest.mark.slow  # many whole flow runs: its module starts early under `make test`
MOTO_SERVICE = {"cloudwatch": "monitoring", "tag": "tagging"}
MOTO_ACTION = {"s3:PutIntelligentTieringConfiguration": "s3:CreateBucket"}


def moto_names(action: str) -> set[str]:
    """The action and the name moto checks it under."""
    service, _, name = action.partition(":")
    return {action, MOTO_ACTION.get(action, f"{MOTO_SERVICE.get(service, service)}:{name}")}


@contextmanager
def iam_user_with(actions: set[str]):
    """An IAM user holding exactly `actions`; AWS calls are authenticated while inside."""
    iam = boto3.client("iam", region_name="us-east-1")
    name = f"ops-{uuid.uuid4().hex[:6]}"
    iam.create_user(UserName=name)
    granted = set().union(*map(moto_names, actions))
    iam.put_user_policy(UserName=name, PolicyName="generated",
                        PolicyDocument=json.dumps(policy_document(granted)))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    block = f"aws-{name}"
    AwsCredentials(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                   region_name="us-east-1").save(block)
    check_signature = IAMRequest.check_signature

    def check_unless_lambda(request: IAMRequest) -> None:
        if request._service != "lambda":  # moto miscomputes Lambda's signature (docstring)
            check_signature(request)

    before = settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count
    settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count = 0, 0
    IAMRequest.check_signature = check_unless_lambda
    try:
        yield block
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count = before
        IAMRequest.check_signature = check_signature


@dataclass
class Scenario:
    """A flow's own test seeding, and how to run and judge it here."""

    flow: Flow
    creds: str  # an unrestricted AwsCredentials block: the run to compare with
    params: dict[str, Any]  # the flow's parameters besides credentials, store and apply
    finds: set[str]  # resource ids the dry run finds
    drop: str  # a read permission the dry run cannot do without
    # Action flows: what is approved, a write permission withheld once, and the resources' state.
    approve: list[str] = field(default_factory=list)
    withhold: str = ""
    withheld: set[str] = field(default_factory=set)  # the approved resources that need it
    state: Callable[[], dict[str, Any]] = dict
    wire: Callable[[str], dict[str, Any]] = lambda creds: {"aws_credentials": creds}  # noqa: E731

    @property
    def module(self) -> ModuleType:
        return sys.modules[self.flow.fn.__module__]


def _plain_creds() -> str:
    name = f"aws-{uuid.uuid4().hex[:8]}"
    AwsCredentials(region_name="us-east-1").save(name)
    return name


@pytest.fixture
def idle_resources(aws):
    world = idle.seed()
    eips, vols, snaps = (sorted(r for r in world.idle if r.startswith(p)) for p in ("eipalloc-", "vol-", "snap-"))
    approve = [eips[0], vols[0], snaps[0], "s3://raw-events/tmp/"]

    def state():
        now = idle.ec2_state()
        exists = now["addresses"] | now["volumes"] | now["snapshots"]
        return {r: r in exists for r in approve[:3]} | {approve[3]: idle._rule_ids("raw-events")}

    return Scenario(flows.idle_resources.idle_resources, _plain_creds(),
                    dict(policy=idle.POLICY, regions=idle.REGIONS, now=idle.NOW), set(world.idle),
                    drop="s3:ListAllMyBuckets", approve=approve, withhold="ec2:DeleteSnapshot",
                    withheld={snaps[0]}, state=state)


@pytest.fixture
def dev_parking(planted):  # noqa: F811
    ids, creds, ec2c, rds = planted
    policy = ParkingPolicy(default_schedules={"dev": "weekdays 08:00-20:00 Asia/Seoul"})
    return Scenario(flows.dev_parking.dev_parking, creds,
                    dict(policy=policy, regions=["us-east-1"], now=WED_NIGHT), {ids["bad"], ids["asg"]},
                    drop="rds:DescribeDBInstances", approve=[ids["dev"], "dev-db", "dev-aurora"],
                    withhold="ec2:StopInstances", withheld={ids["dev"]},
                    state=lambda: {ids.get(k, k): v for k, v in _states(ec2c, rds, ids).items()})


@pytest.fixture
def ebs_rightsizing(planted_volumes):  # noqa: F811
    ids, creds, now = planted_volumes
    ec2 = boto3.client("ec2", region_name="us-east-1")
    approve = [ids["busy"], ids["piops"]]
    return Scenario(flows.ebs_rightsizing.ebs_rightsizing, creds,
                    dict(regions=["us-east-1"], now=now), set(ids.values()),
                    drop="ec2:DescribeVolumesModifications", approve=approve, withhold="ec2:ModifyVolume",
                    withheld=set(approve),
                    state=lambda: {v["VolumeId"]: (v["VolumeType"], v.get("Iops")) for v in ec2.describe_volumes()["Volumes"]})


@pytest.fixture
def s3_intelligent_tiering(planted_buckets):  # noqa: F811
    creds, now = planted_buckets
    buckets = ("analytics-raw", "team-archive", "tiny-bucket")
    return Scenario(flows.s3_intelligent_tiering.s3_intelligent_tiering, creds,
                    dict(policy=TieringPolicy(archive_access_days=90), now=now), {"analytics-raw", "team-archive"},
                    drop="s3:ListBucket", approve=["analytics-raw"], withhold="s3:PutLifecycleConfiguration",
                    withheld={"analytics-raw"}, state=lambda: {b: idle._rule_ids(b) for b in buckets})


@pytest.fixture
def graviton_advisor(planted_x86):  # noqa: F811
    ids, _, creds, now = planted_x86
    return Scenario(flows.graviton_advisor.graviton_advisor, creds,
                    dict(regions=["us-east-1"], now=now),
                    {ids["m5.large"], ids["t3.micro"], "orders-db", "events-db", "sessions", "ingest"},
                    drop="elasticache:DescribeCacheClusters")


@pytest.fixture
def lambda_health(aws):
    now = datetime.now(timezone.utc)
    plant_unhealthy_functions(now)
    return Scenario(flows.lambda_health.lambda_health, _plain_creds(),
                    dict(regions=["us-east-1"], now=now), {r for _, r, _ in UNHEALTHY}, drop="logs:FilterLogEvents")


@pytest.fixture
def queue_health(aws):
    now = datetime.now(timezone.utc)
    plant_queues(now)
    return Scenario(flows.queue_health.queue_health, _plain_creds(),
                    dict(regions=["us-east-1"], now=now), {r for _, r, _, _ in BACKLOGGED},
                    drop="sqs:GetQueueAttributes")


@pytest.fixture
def redshift_health(aws, pg_dsn):
    block, cluster, at = plant_busy_cluster(pg_dsn)
    return Scenario(flows.redshift_health.redshift_health, _plain_creds(),
                    dict(warehouse=block._block_document_name, now=at),
                    {r for _, r in busy_cluster_findings(cluster)}, drop="cloudwatch:GetMetricData")


@pytest.fixture
def query_watch(aws, pg_dsn, pg_admin):
    """A real long query, watched through a Redshift block with IAM auth (see the module docstring)."""
    load_redshift_views(pg_dsn)
    cluster, user = f"c-{uuid.uuid4().hex[:6]}", f"lp_{uuid.uuid4().hex[:8]}"
    boto3.client("redshift", region_name="us-east-1").create_cluster(
        ClusterIdentifier=cluster, NodeType="ra3.xlplus", MasterUsername="admin", MasterUserPassword="Passw0rd!",
        ClusterType="single-node")
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f'create role "IAM:{user}" login in role pg_monitor')
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'grant select on all tables in schema public to "IAM:{user}"')
    sleeper = Session(pg_dsn, "select pg_sleep(60)")
    sleeper.start()
    wait_until(lambda: active_for(pg_dsn, sleeper.pid, 2.5))
    with psycopg.connect(pg_dsn) as conn:
        [started] = conn.execute("select query_start from pg_stat_activity where pid = %s", (sleeper.pid,)).fetchone()

    def wire(creds: str) -> dict[str, Any]:
        block = warehouse_block(pg_dsn, "redshift", user=user, password=None, iam_auth=True, region="us-east-1",
                                cluster_identifier=cluster, aws_credentials=AwsCredentials.load(creds))
        return {"warehouse": block._block_document_name}

    yield Scenario(flows.query_watch.query_watch, _plain_creds(),
                   dict(policy=QueryWatchPolicy(**FAST), now=T0), {blocker_resource_id(sleeper.pid, started)},
                   drop="redshift:GetClusterCredentials", wire=wire)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("select pg_cancel_backend(%s)", (sleeper.pid,))
        conn.execute(f'drop owned by "IAM:{user}"')
    sleeper.join(10)
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f'drop role "IAM:{user}"')


AWS_FLOWS = ["idle_resources", "dev_parking", "ebs_rightsizing", "s3_intelligent_tiering", "graviton_advisor",
             "lambda_health", "queue_health", "redshift_health", "query_watch"]
ACTION_FLOWS = AWS_FLOWS[:4]


@pytest.fixture
def scenario(request) -> Scenario:
    return request.getfixturevalue(request.param)


def _run(s: Scenario, creds: str, store: OpsStore, **extra) -> tuple[Any, str]:
    """Run the flow; -> its final state and what it reported (state message and every artifact)."""
    state = s.flow(store=store._block_document_name, return_state=True, **(s.params | s.wire(creds) | extra))
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    return state, "\n".join([state.message or "", *(str(a.data) for a in artifacts)])


def _outcome(s: Scenario, store: OpsStore) -> tuple[set, set]:
    """What a run left in the store: its open findings and its (planned) actions."""
    job = s.flow.name
    found = {(f["kind"], f["resource_id"], f["severity"], round(f["monthly_cost_usd"] or 0, 2))
             for f in store.findings_of(job, "open")}
    return found, {(a["action"], a["resource_id"], a["outcome"]) for a in store.actions_of(job)}


def _names_missing(text: str, action: str) -> bool:
    """The error itself names the permission (moto's wording, or `error_summary`'s for S3)."""
    return any(re.search(rf"(not authorized to perform: |\(needs ){re.escape(n)}\b", text) for n in moto_names(action))


@pytest.mark.parametrize("scenario", AWS_FLOWS, indirect=True)
def test_dry_run_with_exactly_the_read_only_policy_finds_what_an_unrestricted_run_finds(scenario, store, tmp_path):
    s = scenario
    state, text = _run(s, s.creds, store)
    enforced_store = OpsStore(url=f"sqlite:///{tmp_path / 'enforced.db'}")
    enforced_store.save(f"store-{uuid.uuid4().hex[:8]}")
    with iam_user_with(flow_actions(s.module, read_only=True)) as creds:
        enforced_state, enforced_text = _run(s, creds, enforced_store)
    assert state.is_completed() and enforced_state.is_completed(), enforced_state.message
    assert "Not covered this run" not in text + enforced_text
    found, planned = _outcome(s, enforced_store)
    assert (found, planned) == _outcome(s, store)
    assert {f[1] for f in found} == s.finds


@pytest.mark.parametrize("scenario", AWS_FLOWS, indirect=True)
def test_one_read_permission_short_the_run_reports_which(scenario, store):
    s = scenario
    with iam_user_with(flow_actions(s.module, read_only=True) - {s.drop}) as creds:
        state, text = _run(s, creds, store)
    # The rest of the run still reports; a run left with nothing it could read fails, saying why.
    assert state.is_completed() or "could not read anything" in state.message, state.message
    assert _names_missing(text, s.drop), text


def _apply(s: Scenario, creds: str, store: OpsStore, approve: list[str]) -> None:
    """Apply through the approval path; dev-parking's approved schedules need no second click."""
    state = run_and_answer(s.flow, {"approved": approve}, must_pause=False, store=store._block_document_name,
                           apply=True, **(s.params | s.wire(creds)))
    assert state.is_completed(), state.message


@pytest.mark.parametrize("scenario", ACTION_FLOWS, indirect=True)
def test_apply_with_exactly_its_policy_changes_the_resources_and_one_permission_short_is_named(scenario, store):
    s = scenario
    full, before = flow_actions(s.module), s.state()

    def changed() -> set[str]:
        after = s.state()
        return {r for r in before if after[r] != before[r]}

    def failed() -> list[dict]:
        return [a for a in store.actions_of(s.flow.name) if a["outcome"] == "failed"]

    with iam_user_with(full - {s.withhold}) as creds:
        _apply(s, creds, store, s.approve)
    assert changed() == set(s.approve) - s.withheld
    assert {a["resource_id"] for a in failed()} == s.withheld
    assert all(_names_missing(str(a["detail"]), s.withhold) for a in failed())

    with iam_user_with(full) as creds:
        _apply(s, creds, store, sorted(s.withheld))
    assert changed() == set(s.approve)
    assert len(failed()) == len(s.withheld)  # nothing failed the second time


def test_permissions_follow_calls_into_helpers_a_flow_never_imports():
    from tasks.aws.actions import apply_plan

    # apply_plan declares no action itself: each action it dispatches to (through `_act`) does.
    assert permissions_of([apply_plan]) == {
        "ec2:DescribeAddresses", "ec2:ReleaseAddress", "ec2:DescribeVolumes", "ec2:DescribeSnapshots",
        "ec2:CreateSnapshot", "ec2:CreateTags", "ec2:DeleteVolume", "ec2:DeleteSnapshot",
        "s3:PutLifecycleConfiguration", "s3:GetLifecycleConfiguration"}
    assert permissions_of([apply_plan], include_write=False) == set()
