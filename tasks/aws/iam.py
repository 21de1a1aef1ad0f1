"""IAM reads for least privilege: each Lambda function's execution role and that role's policies.

Per region: the functions (one paged listing) and their tags (one tagging listing); per
distinct role: its inline and attached policies; per distinct managed policy: its default
version, read once however many roles attach it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from rules.lambda_privilege import Function, RolePolicy
from tasks.aws.clients import Account, paginate
from tasks.aws.inventory import tags_by_arn
from tasks.aws.permissions import requires


@requires("lambda:ListFunctions")
def function_roles(account: Account, region: str) -> list[Function]:
    """Every function of a region with its execution role and tags."""
    functions = list(paginate(account.client("lambda", region), "list_functions", "Functions"))
    tags = tags_by_arn(account, region, ["lambda:function"]) if functions else {}
    return [Function(f["FunctionName"], region, f.get("Role", ""), tags.get(f["FunctionArn"], {}))
            for f in functions]


def _document(value: Any) -> dict[str, Any]:
    """A policy document: boto3 decodes IAM's URL-encoded JSON; be safe if it did not."""
    if isinstance(value, str):
        return json.loads(unquote(value))
    return dict(value)


@requires("iam:ListRolePolicies", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies", "iam:GetPolicy",
          "iam:GetPolicyVersion")
def role_policies(account: Account, roles: Iterable[str]) -> dict[str, list[RolePolicy]]:
    """Each role's inline policies and attached managed policies (at their default version)."""
    iam = account.client("iam")
    managed: dict[str, RolePolicy] = {}
    found: dict[str, list[RolePolicy]] = {}
    for role in sorted(set(roles)):
        policies = []
        for name in paginate(iam, "list_role_policies", "PolicyNames", RoleName=role):
            doc = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            policies.append(RolePolicy(f"inline {name}", name, _document(doc)))
        for attached in paginate(iam, "list_attached_role_policies", "AttachedPolicies", RoleName=role):
            arn = attached["PolicyArn"]
            if arn not in managed:
                version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
                doc = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
                managed[arn] = RolePolicy(arn, attached["PolicyName"], _document(doc), managed=True)
            policies.append(managed[arn])
        found[role] = policies
    return found
