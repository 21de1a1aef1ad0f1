"""Read each Snowflake account's grants, users and role use from ACCOUNT_USAGE, and the grants of the
declared roles (ROLES, GRANTS_TO_ROLES, GRANTS_TO_USERS, also ACCOUNT_USAGE): one task run per account."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

import yaml
from prefect import task
from prefect.cache_policies import NONE

from rules.config import ConfigError
from rules.snowflake import ACCOUNT_USAGE
from rules.snowflake_rbac import RoleUse, User
from rules.snowflake_rbac_drift import Declared, parse_declared_grants, resolved_name
from tasks.snowflake import (
    GOVERNANCE_VIEWER,
    SECURITY_VIEWER,
    USE_WAREHOUSE,
    AccountRead,
    SnowflakeAccount,
    grants,
    open_session,
    read_into,
)

REPO = Path(__file__).resolve().parent.parent

ADMINS_SQL = f"""
SELECT DISTINCT grantee_name FROM {ACCOUNT_USAGE}.GRANTS_TO_USERS
WHERE role = 'ACCOUNTADMIN' AND deleted_on IS NULL
"""
PUBLIC_SQL = f"""
SELECT privilege, granted_on, name FROM {ACCOUNT_USAGE}.GRANTS_TO_ROLES
WHERE grantee_name = 'PUBLIC' AND granted_to = 'ROLE' AND deleted_on IS NULL
"""
USERS_SQL = f"""
SELECT name, has_password, has_mfa, ext_authn_duo, disabled, type FROM {ACCOUNT_USAGE}.USERS
WHERE deleted_on IS NULL
"""
ROLES_SQL = f"""
SELECT r.name, r.created_on, MAX(q.start_time) AS last_used
FROM {ACCOUNT_USAGE}.ROLES r
LEFT JOIN {ACCOUNT_USAGE}.QUERY_HISTORY q ON q.role_name = r.name AND q.start_time >= %(since)s
WHERE r.deleted_on IS NULL AND COALESCE(r.role_type, 'ROLE') = 'ROLE'
GROUP BY 1, 2
"""

# The declared-grants drift: only the declared roles' rows (`{roles}`: their names as bind parameters).
# A role granted to a role is `USAGE ON ROLE <granted role>` held by the grantee. GRANTED_TO is ROLE
# for an account role; newer documentation spells it ACCOUNT ROLE.
DECLARED_ROLES_SQL = f"""
SELECT name FROM {ACCOUNT_USAGE}.ROLES
WHERE deleted_on IS NULL AND COALESCE(role_type, 'ROLE') = 'ROLE' AND name IN ({{roles}})
"""
DECLARED_GRANTS_TO_ROLES_SQL = f"""
SELECT privilege, granted_on, name, table_catalog, table_schema, grantee_name
FROM {ACCOUNT_USAGE}.GRANTS_TO_ROLES
WHERE deleted_on IS NULL AND granted_to IN ('ROLE', 'ACCOUNT ROLE')
  AND (grantee_name IN ({{roles}}) OR (granted_on = 'ROLE' AND name IN ({{roles}})))
"""
DECLARED_GRANTS_TO_USERS_SQL = f"""
SELECT role, grantee_name FROM {ACCOUNT_USAGE}.GRANTS_TO_USERS
WHERE deleted_on IS NULL AND role IN ({{roles}})
"""


def _flag(value: object) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes", "y")


def _since(last_used: datetime | None, since: datetime) -> datetime | None:
    """A role with no query since `since` has no last use in what was read (the join only matches
    newer queries; an emulator's MAX over no rows can come back as the epoch instead of NULL)."""
    return last_used if last_used is not None and last_used >= since else None


@task(name="snowflake-read-rbac", task_run_name="read-rbac-{account.block}", cache_policy=NONE)
@grants(SECURITY_VIEWER, GOVERNANCE_VIEWER, USE_WAREHOUSE)
def read_rbac(account: SnowflakeAccount, since: datetime, login_timeout: int) -> AccountRead:
    """Reads: `admins`, `public` (required), `users`, `roles` (role use since `since`)."""
    read = AccountRead(account.scope)
    with open_session(account, login_timeout, read) as session:
        if session is None:
            return read
        read_into(read, "admins", "GRANTS_TO_USERS", SECURITY_VIEWER,
                  lambda: [r["grantee_name"] for r in session.rows(ADMINS_SQL)], account)
        read_into(read, "public", "GRANTS_TO_ROLES", SECURITY_VIEWER,
                  lambda: [{"privilege": r["privilege"], "granted_on": r["granted_on"], "name": r["name"]}
                           for r in session.rows(PUBLIC_SQL)], account)
        read_into(read, "users", "USERS", SECURITY_VIEWER, lambda: [
            User(account.scope, r["name"], _flag(r["has_password"]), _flag(r["has_mfa"]) or _flag(r["ext_authn_duo"]),
                 _flag(r["disabled"]), r["type"] or "") for r in session.rows(USERS_SQL)], account)
        read_into(read, "roles", "ROLES and QUERY_HISTORY", GOVERNANCE_VIEWER, lambda: [
            RoleUse(account.scope, r["name"], r["created_on"], _since(r["last_used"], since))
            for r in session.rows(ROLES_SQL, {"since": since})], account)
    return read


@task(name="snowflake-read-grants", task_run_name="read-grants-{account.block}", cache_policy=NONE)
@grants(SECURITY_VIEWER, USE_WAREHOUSE)
def read_declared_role_grants(account: SnowflakeAccount, roles: list[str], login_timeout: int) -> AccountRead:
    """Reads, for `roles` (SQL identifiers: upper case, or quoted) only, from ACCOUNT_USAGE (up to
    2 hours behind): `roles` (those that exist), `grants_to_roles` (GRANTS_TO_ROLES rows granted to
    them, or granting them to a role) and `grants_to_users` (GRANTS_TO_USERS rows). Revoked rows
    (DELETED_ON set) are not read."""
    read = AccountRead(account.scope)
    names = {f"r{i}": resolved_name(r) for i, r in enumerate(roles)}
    placeholders = ", ".join(f"%({k})s" for k in names)
    with open_session(account, login_timeout, read) as session:
        if session is None:
            return read

        def rows(sql: str) -> list[dict]:
            return session.rows(sql.format(roles=placeholders), names)

        read_into(read, "roles", "ROLES", SECURITY_VIEWER,
                  lambda: [r["name"] for r in rows(DECLARED_ROLES_SQL)], account)
        read_into(read, "grants_to_roles", "GRANTS_TO_ROLES", SECURITY_VIEWER,
                  lambda: rows(DECLARED_GRANTS_TO_ROLES_SQL), account)
        read_into(read, "grants_to_users", "GRANTS_TO_USERS", SECURITY_VIEWER,
                  lambda: rows(DECLARED_GRANTS_TO_USERS_SQL), account)
    return read


def read_declared_models(files: Mapping[str, str] | None, accounts: Sequence[str]) -> dict[str, tuple[str, Declared]]:
    """Per connector block, its declared role/grant model (the file's path, the model), checked
    before any connection: a bad file names itself, the field and the fix."""
    files = dict(files or {})
    unknown = sorted(set(files) - set(accounts))
    if unknown:
        raise ConfigError(f"`declared_grants` names {unknown}, which are not in `accounts` {list(accounts)}: "
                          "key it by connector block name.")
    models = {}
    for block, name in files.items():
        path = (REPO / name).resolve()
        if not path.is_relative_to(REPO) or not path.is_file():
            raise ConfigError(f"`declared_grants` for {block!r}: {name!r} is not a file in this repository; "
                              "give a path inside it, e.g. `config/snowflake_roles.yaml`.")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"`declared_grants` for {block!r}: {name} is not valid YAML: {exc}") from None
        models[block] = (name, parse_declared_grants(data, name))
    return models
