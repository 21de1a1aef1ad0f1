"""Least privilege per Lambda function: execution roles that grant too much, by statement.

Pure judgement over the policies attached to each function's role (inline and managed, the
managed ones at their default version). A statement grants too much when it allows every
action of a service (`s3:*`, `*`, or `NotAction`), or a resource wildcard (`*`) for actions that
can be scoped, without a condition; an administrator policy attached (or `*` on `*`) is critical.
Actions that AWS only authorizes on `*` (log streams, X-Ray, VPC network interfaces, metrics)
are allowed on `*`, which is what AWS's own AWSLambdaBasicExecutionRole and
AWSLambdaVPCAccessExecutionRole grant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from rules.config import OPT_OUT_TAG, JobPolicy, opted_out
from rules.findings import Finding, Severity

OVER_PRIVILEGED = "lambda-over-privileged"
MAX_NAMED = 3  # statements named in the reason; the numbers hold them all

WILDCARD_OK = ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments",
               "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets",
               "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
               "ec2:DeleteNetworkInterface",
               "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses", "cloudwatch:PutMetricData")


class PrivilegePolicy(JobPolicy):
    """What counts as too much for a function's execution role."""

    admin_policies: list[str] = Field(
        default_factory=lambda: ["AdministratorAccess", "PowerUserAccess", "IAMFullAccess"],
        description="Managed policy names that make a role an administrator (critical).")
    allowed_on_any_resource: list[str] = Field(
        default_factory=lambda: list(WILDCARD_OK),
        description="Actions fine on `Resource: *` (AWS authorizes them only there).")
    ignore_functions: list[str] = Field(default_factory=list, description="Function names never reported.")
    opt_out_tag: str = Field(default=OPT_OUT_TAG, description="A function carrying this tag key is never reported.")


@dataclass(frozen=True)
class RolePolicy:
    """One policy of a role: `inline <name>` or a managed policy's ARN, and its document."""

    source: str
    name: str
    document: Mapping[str, Any]
    managed: bool = False


@dataclass(frozen=True)
class Function:
    name: str
    region: str
    role_arn: str
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def role_name(self) -> str:
        return self.role_arn.rsplit("/", 1)[-1]


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    statements = document.get("Statement", [])
    return [statements] if isinstance(statements, Mapping) else list(statements)


@dataclass(frozen=True)
class Excess:
    """A statement that grants too much, and how."""

    policy: str
    statement: str  # `#2` or its Sid
    what: str
    critical: bool


def _service_wildcard(action: str) -> bool:
    return action == "*" or action.endswith(":*")


def statement_excess(policy: RolePolicy, statements: Iterable[Mapping[str, Any]], allowed: set[str]) -> list[Excess]:
    found = []
    for n, st in enumerate(statements, start=1):
        if st.get("Effect") != "Allow":
            continue
        label = f"statement {st['Sid']}" if st.get("Sid") else f"statement #{n}"
        actions, resources = _list(st.get("Action")), _list(st.get("Resource"))
        everywhere = "*" in resources or "NotResource" in st
        if "NotAction" in st:
            found.append(Excess(policy.name, label, f"NotAction {_list(st['NotAction'])} allows every other action"
                                f"{' on every resource' if everywhere else ''}", everywhere))
            continue
        if "*" in actions and everywhere:
            found.append(Excess(policy.name, label, 'Action "*" on Resource "*": administrator', True))
            continue
        wild = [a for a in actions if _service_wildcard(a)]
        if wild:
            found.append(Excess(policy.name, label, f"Action {', '.join(wild)}"
                                + (' on Resource "*"' if everywhere else f" on {', '.join(resources[:2])}"), False))
            continue
        if everywhere and not st.get("Condition"):
            scoped = [a for a in actions if a not in allowed]
            if scoped:
                found.append(Excess(policy.name, label, f'Resource "*" for {", ".join(scoped[:4])}'
                                    + (f" and {len(scoped) - 4} more" if len(scoped) > 4 else ""), False))
    return found


def judge_functions(functions: Sequence[Function], policies: Mapping[str, Sequence[RolePolicy]],
                    policy: PrivilegePolicy) -> list[Finding]:
    """One finding per function whose role grants too much, naming the statements."""
    allowed = set(policy.allowed_on_any_resource)
    admin = set(policy.admin_policies)
    by_role: dict[str, list[Excess]] = {}
    findings = []
    for fn in functions:
        if fn.name in policy.ignore_functions or opted_out(dict(fn.tags), policy.opt_out_tag):
            continue
        if fn.role_name not in by_role:
            excess = []
            for p in policies.get(fn.role_name, []):
                if p.managed and p.name in admin:
                    excess.append(Excess(p.name, "attached", f"administrator policy {p.name} attached", True))
                    continue
                excess += statement_excess(p, _statements(p.document), allowed)
            by_role[fn.role_name] = excess
        excess = by_role[fn.role_name]
        if not excess:
            continue
        critical = any(e.critical for e in excess)
        named = "; ".join(f"{e.policy} {e.statement}: {e.what}" for e in excess[:MAX_NAMED])
        more = f"; and {len(excess) - MAX_NAMED} more" if len(excess) > MAX_NAMED else ""
        findings.append(Finding(
            kind=OVER_PRIVILEGED, resource_id=fn.name, severity=Severity.CRITICAL if critical else Severity.WARNING,
            reason=f"role {fn.role_name} grants too much: {named}{more}",
            numbers={"role": fn.role_arn, "statements": [
                {"policy": e.policy, "statement": e.statement, "grants": e.what} for e in excess]}))
    return findings
