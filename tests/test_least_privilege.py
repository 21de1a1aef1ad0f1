"""Least privilege, proven with moto's IAM enforcement: a flow runs with a user that holds
exactly the policy `deployments/iam.py` generates for it, and a missing permission is named."""

from __future__ import annotations

import json
import uuid
from contextlib import contextmanager

import boto3
from moto import settings
from moto.core.responses import ActionAuthenticatorMixin
from prefect_aws import AwsCredentials

import flows.dev_parking as dev_parking_module
from deployments.iam import flow_actions, policy_document
from flows.dev_parking import dev_parking
from rules.parking import ParkingPolicy
from tests.test_dev_parking import WED_NIGHT, _states, planted  # noqa: F401 - the fixture


@contextmanager
def iam_user_with(actions: set[str]):
    """An IAM user holding exactly `actions`; AWS calls are authenticated while inside."""
    iam = boto3.client("iam", region_name="us-east-1")
    name = f"ops-{uuid.uuid4().hex[:6]}"
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="generated",
                        PolicyDocument=json.dumps(policy_document(actions)))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    block = f"aws-{name}"
    AwsCredentials(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                   region_name="us-east-1").save(block)
    before = settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count
    settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count = 0, 0
    try:
        yield block
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count = before


def _run(creds: str, store, apply: bool):
    policy = ParkingPolicy(default_schedules={"dev": "weekdays 08:00-20:00 Asia/Seoul"})
    return dev_parking(policy=policy, aws_credentials=creds, store=store._block_document_name,
                       regions=["us-east-1"], apply=apply, now=WED_NIGHT)


def test_dev_parking_read_only_policy_is_enough_for_a_dry_run(planted, store):  # noqa: F811
    ids, _, _, _ = planted
    with iam_user_with(flow_actions(dev_parking_module, read_only=True)) as creds:
        plan = _run(creds, store, apply=False)
    assert sorted(i.resource.resource_id for i in plan.actions) == sorted([ids["dev"], "dev-db", "dev-aurora"])


def test_dev_parking_apply_with_exactly_its_policy_then_one_permission_short(planted, store):  # noqa: F811
    ids, _, ec2c, rds = planted
    full = flow_actions(dev_parking_module)
    with iam_user_with(full - {"ec2:StopInstances"}) as creds:
        _run(creds, store, apply=True)
    states = _states(ec2c, rds, ids)
    assert states["dev"] == "running" and states["dev-db"] == "stopped"
    failed = [a for a in store.actions_of("dev-parking") if a["outcome"] == "failed"]
    assert [a["resource_id"] for a in failed] == [ids["dev"]]
    assert "ec2:StopInstances" in failed[0]["detail"]

    with iam_user_with(full) as creds:
        _run(creds, store, apply=True)
    assert _states(ec2c, rds, ids)["dev"] == "stopped"
