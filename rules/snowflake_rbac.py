"""Snowflake RBAC hygiene: who holds ACCOUNTADMIN, what is granted to PUBLIC, who signs in with a
password and no MFA, and which roles nobody used for a while.

Pure, over ACCOUNT_USAGE (GRANTS_TO_USERS, GRANTS_TO_ROLES, USERS, ROLES) and the last use of each
role in QUERY_HISTORY. A role used only as a secondary role or only to own objects does not show
in QUERY_HISTORY's ROLE_NAME: the finding says "no query ran as it", nothing more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import Field

from rules.findings import Finding, Severity
from rules.snowflake import SnowflakePolicy

KIND_ACCOUNTADMIN = "snowflake-accountadmin-user"
KIND_PUBLIC_GRANT = "snowflake-public-grant"
KIND_PASSWORD_ONLY = "snowflake-password-without-mfa"
KIND_UNUSED_ROLE = "snowflake-unused-role"
SYSTEM_ROLES = frozenset({"ACCOUNTADMIN", "SECURITYADMIN", "SYSADMIN", "USERADMIN", "ORGADMIN", "PUBLIC"})


class SnowflakeRbacPolicy(SnowflakePolicy):
    """What the RBAC review accepts."""

    accountadmin_users: list[str] = Field(
        default_factory=list, description="Users allowed to hold ACCOUNTADMIN (break-glass admins); any other holder is reported.",
    )
    public_grants_allowed: list[str] = Field(
        default_factory=list, description="Grants to PUBLIC that are fine, as `PRIVILEGE ON NAME`, e.g. `USAGE ON ANALYTICS`.",
    )
    unused_role_days: int = Field(default=90, ge=7, le=365, description="A role no query ran as for this many days is reported.")


@dataclass(frozen=True)
class User:
    account: str
    name: str
    has_password: bool
    has_mfa: bool
    disabled: bool
    user_type: str = ""  # PERSON, SERVICE, LEGACY_SERVICE or empty


@dataclass(frozen=True)
class RoleUse:
    account: str
    role: str
    created: datetime
    last_used: datetime | None


def judge_rbac(
    account: str, admins: Iterable[str], public_grants: Iterable[Mapping[str, str]], users: Iterable[User] | None,
    roles: Iterable[RoleUse] | None, policy: SnowflakeRbacPolicy, now: datetime,
) -> list[Finding]:
    """Findings for one account; a `None` input was not read, so its checks are skipped."""
    found = []
    allowed = {u.upper() for u in policy.accountadmin_users}
    for user in sorted(set(admins)):
        if user.upper() not in allowed:
            found.append(Finding(kind=KIND_ACCOUNTADMIN, resource_id=user, scope=account, severity=Severity.WARNING,
                                 reason=f"{user} holds ACCOUNTADMIN and is not one of the allowed admins "
                                        f"({', '.join(sorted(allowed)) or 'none listed'}): REVOKE ROLE ACCOUNTADMIN FROM USER {user}.",
                                 numbers={"user": user}))
    ok = {g.upper() for g in policy.public_grants_allowed}
    for g in public_grants:
        label = f"{g['privilege']} ON {g['name']}"
        if label.upper() not in ok:
            found.append(Finding(kind=KIND_PUBLIC_GRANT, resource_id=f"{g['privilege']} on {g['granted_on']} {g['name']}",
                                 scope=account, severity=Severity.WARNING,
                                 reason=f"{label} ({g['granted_on']}) is granted to PUBLIC, so to every user: revoke it, "
                                        "or grant it to the roles that need it.",
                                 numbers=dict(g)))
    for u in users or []:
        if u.has_password and not u.has_mfa and not u.disabled:
            found.append(Finding(kind=KIND_PASSWORD_ONLY, resource_id=u.name, scope=account,
                                 severity=Severity.CRITICAL if u.name in set(admins) else Severity.WARNING,
                                 reason=f"{u.name} signs in with a password and no MFA"
                                        + (" and holds ACCOUNTADMIN" if u.name in set(admins) else "")
                                        + ": enrol MFA, or for a service use key-pair auth and unset the password.",
                                 numbers={"user": u.name, "type": u.user_type}))
    limit = now - timedelta(days=policy.unused_role_days)
    for r in roles or []:
        if r.role in SYSTEM_ROLES or r.created > limit or (r.last_used and r.last_used > limit):
            continue
        when = f"last on {r.last_used.date()}" if r.last_used else "never in the history read"
        found.append(Finding(kind=KIND_UNUSED_ROLE, resource_id=r.role, scope=account, severity=Severity.INFO,
                             reason=f"No query ran as role {r.role} for {policy.unused_role_days} days ({when}): "
                                    "drop it, or say why it stays.",
                             numbers={"role": r.role, "last_used": r.last_used.isoformat() if r.last_used else None}))
    return found
