"""Least privilege, proven with moto's IAM enforcement, for every flow that calls AWS: run with a
user holding exactly the policy `deployments/iam.py` generates for it, the flow finds what an
unrestricted run finds and (action flows) really changes the resources; one permission short,
the run names the missing permission.

moto 5.2.5 gaps, bridged here and nowhere else (`iam_user_with`):
- it checks CloudWatch and Resource Groups Tagging calls under their signing names
  (`monitoring:`, `tagging:`) instead of the IAM prefixes `cloudwatch:` and `tag:`, a PUT of a
  bucket's Intelligent-Tiering configuration as `s3:CreateBucket`, and the account's public access
  block (S3 Control) as `s3:GetPublicAccessBlock`: the user is granted each
  generated action under the name moto checks too (`moto_names`), and a denial names moto's name;
- it cannot verify the SigV4 signature of Lambda's REST calls (SignatureDoesNotMatch for every
  user): the signature check is skipped for Lambda only; authorization is still checked;
- it never checks sts:GetCallerIdentity (nor does AWS), reads S3 inventory configurations under
  s3:ListBucket, and implements neither the Pricing API nor Redshift Serverless GetCredentials:
  those permissions are declared but not proven here.

query-watch reaches AWS only for a Redshift block with IAM auth: moto hands out the database user
`IAM:<user>`, which the local PostgreSQL (trust auth) lets in as a role of that name. data-integrity
gets its credentials through the same `WarehouseConnection` code and is not run here.
How a job takes part (in its own test module, nothing to edit here):

    from tests.least_privilege import Scenario, scenario_for, test_read_only_policy_finds_the_same  # noqa: F401

    @scenario_for("queue-health")
    def least_privilege_scenario(aws):
        ...plant the resources...
        return Scenario(...)

Import `test_one_read_permission_short_is_named` too, and for a job that acts
`test_apply_with_its_policy_changes_exactly_the_approved`; pytest collects the imported tests in
that module, with its fixtures. tests/test_least_privilege.py fails when an AWS job has no scenario.
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.iam.access_control import IAMRequest
from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect_aws import AwsCredentials

from blocks.store import OpsStore
from deployments.iam import flow_actions, policy_document
from tests.approvals import run_and_answer

# The names moto checks instead of the IAM ones (see the module docstring).
MOTO_SERVICE = {"cloudwatch": "monitoring", "tag": "tagging"}
MOTO_ACTION = {"s3:PutIntelligentTieringConfiguration": "s3:CreateBucket",
               "s3:GetAccountPublicAccessBlock": "s3:GetPublicAccessBlock"}


def moto_names(action: str) -> set[str]:
    """The action and the name moto checks it under."""
    service, _, name = action.partition(":")
    return {action, MOTO_ACTION.get(action, f"{MOTO_SERVICE.get(service, service)}:{name}")}


@contextmanager
def iam_user_with(actions: set[str], denied: list[dict[str, Any]] = ()):
    """An IAM user holding exactly `actions` (less any `denied` statements: {"Action", "Resource"});
    AWS calls are authenticated while inside."""
    iam = boto3.client("iam", region_name="us-east-1")
    name = f"ops-{uuid.uuid4().hex[:6]}"
    iam.create_user(UserName=name)
    granted = set().union(*map(moto_names, actions))
    document = policy_document(granted)
    document["Statement"] += [{"Effect": "Deny", **statement} for statement in denied]
    document["Statement"] = [st for st in document["Statement"] if st["Action"]]
    if document["Statement"]:  # a job with one permission, withheld: a user with no policy at all
        iam.put_user_policy(UserName=name, PolicyName="generated", PolicyDocument=json.dumps(document))
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


def plain_creds() -> str:
    name = f"aws-{uuid.uuid4().hex[:8]}"
    AwsCredentials(region_name="us-east-1").save(name)
    return name



def scenario_for(job: str) -> Callable:
    """Declare `fn` (a fixture returning or yielding a `Scenario`) as `job`'s least-privilege case.

    tests/test_least_privilege.py finds the declarations by this decorator's text."""
    def register(fn: Callable) -> Callable:
        return pytest.fixture(name="least_privilege")(fn)
    return register


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


def _apply(s: Scenario, creds: str, store: OpsStore, approve: list[str]) -> None:
    """Apply through the approval path; dev-parking's approved schedules need no second click."""
    state = run_and_answer(s.flow, {"approved": approve}, must_pause=False, store=store._block_document_name,
                           apply=True, **(s.params | s.wire(creds)))
    assert state.is_completed(), state.message




def test_read_only_policy_finds_the_same(least_privilege: Scenario, store, tmp_path):
    s = least_privilege
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


def test_one_read_permission_short_is_named(least_privilege: Scenario, store):
    s = least_privilege
    with iam_user_with(flow_actions(s.module, read_only=True) - {s.drop}) as creds:
        state, text = _run(s, creds, store)
    # The rest of the run still reports; a run left with nothing it could read fails, saying why.
    assert state.is_completed() or "could not read anything" in state.message, state.message
    assert _names_missing(text, s.drop), text


def test_apply_with_its_policy_changes_exactly_the_approved(least_privilege: Scenario, store):
    s = least_privilege
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


