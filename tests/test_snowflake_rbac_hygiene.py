"""Snowflake RBAC hygiene against a fakesnow server, with the real connector.

GRANTS_TO_USERS, GRANTS_TO_ROLES, USERS, ROLES and QUERY_HISTORY are tables with the ACCOUNT_USAGE
views' documented columns (fakesnow has no ACCOUNT_USAGE), filled with planted users, roles and
grants, traps included.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from deployments.local_snowflake import (
    create_account_usage,
    fakesnow_server,
    insert_rows,
    save_connector,
    seed_connection,
)
from flows.snowflake_rbac_hygiene import snowflake_rbac_hygiene
from rules.snowflake_rbac import (
    KIND_ACCOUNTADMIN,
    KIND_PASSWORD_ONLY,
    KIND_PUBLIC_GRANT,
    KIND_UNUSED_ROLE,
    SnowflakeRbacPolicy,
)
from tests.test_snowflake_cost_report import executed

AU = "SNOWFLAKE.ACCOUNT_USAGE"
PROD = "acme-prod"
NOW = datetime(2026, 11, 24, 6, 0, tzinfo=timezone.utc)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def user_grant(role: str, user: str, deleted: bool = False) -> dict:
    return {"CREATED_ON": ago(300), "DELETED_ON": ago(5) if deleted else None, "ROLE": role, "GRANTED_TO": "USER",
            "GRANTEE_NAME": user, "GRANTED_BY": "SECURITYADMIN"}


def public_grant(privilege: str, on: str, name: str, deleted: bool = False) -> dict:
    return {"CREATED_ON": ago(100), "MODIFIED_ON": ago(100), "PRIVILEGE": privilege, "GRANTED_ON": on, "NAME": name,
            "TABLE_CATALOG": "ANALYTICS", "TABLE_SCHEMA": "PUBLIC", "GRANTED_TO": "ROLE", "GRANTEE_NAME": "PUBLIC",
            "GRANT_OPTION": "false", "GRANTED_BY": "SYSADMIN", "DELETED_ON": ago(3) if deleted else None,
            "GRANTED_BY_ROLE_TYPE": "ROLE", "OBJECT_INSTANCE": None}


def user(name: str, password: bool, mfa: bool = False, duo: bool = False, disabled: bool = False,
         kind: str = "PERSON") -> dict:
    return {"USER_ID": len(name), "NAME": name, "CREATED_ON": ago(400), "DELETED_ON": None, "LOGIN_NAME": name,
            "DISPLAY_NAME": name, "EMAIL": f"{name.lower()}@acme.test", "MUST_CHANGE_PASSWORD": False,
            "HAS_PASSWORD": password, "COMMENT": "", "DISABLED": "true" if disabled else "false",
            "SNOWFLAKE_LOCK": "false", "DEFAULT_WAREHOUSE": "BI_WH", "DEFAULT_ROLE": "ANALYST",
            "EXT_AUTHN_DUO": duo, "EXT_AUTHN_UID": None, "HAS_MFA": mfa, "LAST_SUCCESS_LOGIN": ago(1),
            "HAS_RSA_PUBLIC_KEY": not password, "PASSWORD_LAST_SET_TIME": ago(200) if password else None,
            "OWNER": "USERADMIN", "TYPE": kind}


def role(name: str, created_days_ago: float) -> dict:
    return {"ROLE_ID": len(name), "CREATED_ON": ago(created_days_ago), "DELETED_ON": None, "NAME": name,
            "COMMENT": "", "OWNER": "USERADMIN", "ROLE_TYPE": "ROLE", "ROLE_DATABASE_NAME": None,
            "ROLE_INSTANCE_ID": None, "OWNER_ROLE_TYPE": "ROLE"}


def ran_as(query_id: str, role_name: str, days_ago: float) -> dict:
    return executed(query_id, "BI_WH", "X-Small", "ALICE", ago(days_ago), 1000) | {"ROLE_NAME": role_name}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with fakesnow_server() as url:
        with seed_connection(url) as conn:
            create_account_usage(conn)
            insert_rows(conn, f"{AU}.GRANTS_TO_USERS", [
                user_grant("ACCOUNTADMIN", "BREAKGLASS"),  # allowed by the policy
                user_grant("ACCOUNTADMIN", "MALLORY"),
                user_grant("ACCOUNTADMIN", "OLDADMIN", deleted=True),  # trap: revoked
                user_grant("SYSADMIN", "BOB"),  # trap: not ACCOUNTADMIN
            ])
            insert_rows(conn, f"{AU}.GRANTS_TO_ROLES", [
                public_grant("USAGE", "DATABASE", "ANALYTICS"),  # trap: allowed by the policy
                public_grant("SELECT", "TABLE", "SALARIES"),
                public_grant("SELECT", "TABLE", "OLD_EXPORT", deleted=True),  # trap: revoked
            ])
            insert_rows(conn, f"{AU}.USERS", [
                user("ALICE", password=True),
                user("MALLORY", password=True),
                user("SVC_ETL", password=False, kind="SERVICE"),  # trap: key-pair only
                user("CAROL", password=True, mfa=True),  # trap: MFA
                user("DAN", password=True, duo=True),  # trap: Duo MFA
                user("OLD", password=True, disabled=True),  # trap: disabled
                user("BREAKGLASS", password=True, mfa=True),
            ])
            insert_rows(conn, f"{AU}.ROLES", [
                role("REPORTING", 200), role("ETL_ROLE", 200), role("ANALYST", 300),
                role("NEW_ROLE", 10),  # trap: too young to judge
                role("SYSADMIN", 900),  # trap: a system role
            ])
            insert_rows(conn, f"{AU}.QUERY_HISTORY", [
                ran_as("r1", "REPORTING", 120),  # before the 90 days
                ran_as("a1", "ANALYST", 1),  # trap: used yesterday
            ])
        yield url


def test_rbac_findings_and_the_traps_stay_quiet(endpoint, store):
    name = save_connector(f"sf-{uuid.uuid4().hex[:8]}", PROD)
    policy = SnowflakeRbacPolicy(accountadmin_users=["BREAKGLASS"], public_grants_allowed=["USAGE ON ANALYTICS"],
                                 login_timeout_seconds=5)
    findings = snowflake_rbac_hygiene(accounts=[name], endpoints={name: endpoint}, policy=policy,
                                      store=store._block_document_name, now=NOW)
    assert sorted((f.kind, f.resource_id, f.severity.value) for f in findings) == [
        (KIND_ACCOUNTADMIN, "MALLORY", "warning"),
        (KIND_PASSWORD_ONLY, "ALICE", "warning"),
        (KIND_PASSWORD_ONLY, "MALLORY", "critical"),  # an admin signing in with a password alone
        (KIND_PUBLIC_GRANT, "SELECT on TABLE SALARIES", "warning"),
        (KIND_UNUSED_ROLE, "ETL_ROLE", "info"),
        (KIND_UNUSED_ROLE, "REPORTING", "info"),
    ]
    reporting = next(f for f in findings if f.resource_id == "REPORTING")
    assert reporting.numbers["last_used"] is None  # its last query is older than the history read
