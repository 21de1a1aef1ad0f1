"""lambda-least-privilege: statements that grant too much (pure), and the flow on moto with
roles built from AWS's own managed policies and inline ones."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime, timezone

import boto3
import pytest

from rules.lambda_privilege import PrivilegePolicy, RolePolicy, statement_excess
from tests.least_privilege import (  # noqa: F401 - the least-privilege tests run here
    Scenario,
    plain_creds,
    scenario_for,
    test_one_read_permission_short_is_named,
    test_read_only_policy_finds_the_same,
)

REGION = "us-east-1"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
AWS_POLICY = "arn:aws:iam::aws:policy/"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


def _excess(*statements):
    policy = RolePolicy("inline p", "p", {"Version": "2012-10-17", "Statement": list(statements)})
    return [(e.statement, e.what, e.critical) for e in
            statement_excess(policy, policy.document["Statement"], set(PrivilegePolicy().allowed_on_any_resource))]


def test_statements_that_grant_too_much():
    bucket = "arn:aws:s3:::raw/*"
    assert _excess({"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": bucket}) == []
    assert _excess({"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Resource": "*"}) == []
    assert _excess({"Effect": "Allow", "Action": "*", "Resource": "*"}) == [
        ("statement #1", 'Action "*" on Resource "*": administrator', True)]
    assert _excess({"Sid": "Tables", "Effect": "Allow", "Action": "dynamodb:*",
                    "Resource": "arn:aws:dynamodb:us-east-1:1:table/t"}) == [
        ("statement Tables", "Action dynamodb:* on arn:aws:dynamodb:us-east-1:1:table/t", False)]
    assert _excess({"Effect": "Allow", "Action": ["s3:GetObject", "logs:PutLogEvents"], "Resource": "*"}) == [
        ("statement #1", 'Resource "*" for s3:GetObject', False)]
    assert _excess({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}) == [
        ("statement #1", "NotAction ['iam:*'] allows every other action on every resource", True)]
    # Narrowed by a condition, or a Deny: not an excess.
    assert _excess({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
                    "Condition": {"StringEquals": {"aws:ResourceAccount": "1"}}}) == []
    assert _excess({"Effect": "Deny", "Action": "*", "Resource": "*"}) == []


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", "def main(event, context):\n    return {}\n")
    return buf.getvalue()


# function -> (managed policies, inline statements, tags)
FUNCTIONS = {
    "ingest-ok": (["service-role/AWSLambdaBasicExecutionRole"],
                  [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::raw-events/*"}], {}),
    "vpc-reader": (["service-role/AWSLambdaVPCAccessExecutionRole"], [], {}),
    "admin-fn": (["AdministratorAccess"], [], {}),
    "tables-fn": ([], [{"Sid": "Tables", "Effect": "Allow", "Action": "dynamodb:*",
                        "Resource": "arn:aws:dynamodb:us-east-1:123456789012:table/events"}], {}),
    "reads-everything": ([], [{"Sid": "ReadAll", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
                               "Resource": "*"}], {}),
    "star-star": ([], [{"Effect": "Allow", "Action": "*", "Resource": "*"}], {}),
    "break-glass-fn": (["AdministratorAccess"], [], {"dataplatform-ops:keep": "incident tooling"}),
}
EXPECTED = {("admin-fn", "critical"), ("tables-fn", "warning"), ("reads-everything", "warning"),
            ("star-star", "critical")}


@pytest.fixture
def aws_managed_policies(monkeypatch):
    """moto with AWS's managed policies (AdministratorAccess, AWSLambdaBasicExecutionRole...),
    which it loads only when asked, before its IAM backend starts."""
    from moto import mock_aws

    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    with mock_aws():
        yield


def plant_functions() -> None:
    iam = boto3.client("iam", region_name=REGION)
    lam = boto3.client("lambda", region_name=REGION)
    for name, (managed, inline, tags) in FUNCTIONS.items():
        role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
        for policy in managed:
            iam.attach_role_policy(RoleName=f"{name}-role", PolicyArn=AWS_POLICY + policy)
        if inline:
            iam.put_role_policy(RoleName=f"{name}-role", PolicyName=f"{name}-inline",
                                PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": inline}))
        lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="handler.main",
                            Code={"ZipFile": _zip()}, Tags=tags)


def test_flow_names_each_function_and_the_statement(aws_managed_policies, store):
    from flows.lambda_least_privilege import lambda_least_privilege

    plant_functions()
    result = lambda_least_privilege(regions=[REGION], aws_credentials=plain_creds(),
                                    store=store._block_document_name, now=NOW)
    assert result.errors == {}
    assert {(f.resource_id, f.severity.value) for f in result.findings} == EXPECTED
    by_fn = {f.resource_id: f for f in result.findings}
    assert by_fn["admin-fn"].reason == "role admin-fn-role grants too much: AdministratorAccess attached: " \
                                       "administrator policy AdministratorAccess attached"
    assert "tables-fn-inline statement Tables: Action dynamodb:* on arn:aws:dynamodb:" in by_fn["tables-fn"].reason
    assert 'reads-everything-inline statement ReadAll: Resource "*" for s3:GetObject, s3:PutObject' in \
        by_fn["reads-everything"].reason
    assert by_fn["star-star"].numbers["statements"] == [
        {"policy": "star-star-inline", "statement": "statement #1", "grants": 'Action "*" on Resource "*": administrator'}]


@pytest.mark.parametrize("bad", [{"admin_policies": "AdministratorAccess"}, {"unknown": 1}])
def test_policy_rejects_bad_input(bad):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        PrivilegePolicy(**bad)


@scenario_for("lambda-least-privilege")
def least_privilege_scenario(aws_managed_policies):
    from flows.lambda_least_privilege import lambda_least_privilege

    plant_functions()
    return Scenario(lambda_least_privilege, plain_creds(), dict(regions=[REGION], now=NOW),
                    {name for name, _ in EXPECTED}, drop="iam:GetPolicyVersion")
