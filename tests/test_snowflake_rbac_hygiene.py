"""Snowflake RBAC hygiene against a fakesnow server, with the real connector.

GRANTS_TO_USERS, GRANTS_TO_ROLES, USERS, ROLES and QUERY_HISTORY are tables with the ACCOUNT_USAGE
views' documented columns (fakesnow has no ACCOUNT_USAGE), filled with planted users, roles and
grants, traps included. The declared-grants drift reads the same views (ROLES, GRANTS_TO_ROLES,
GRANTS_TO_USERS) for the roles of config/snowflake_roles.yaml.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from prefect.artifacts import Artifact

from deployments.local_snowflake import (
    create_account_usage,
    fakesnow_server,
    insert_rows,
    save_connector,
    seed_connection,
)
from flows.snowflake_rbac_hygiene import snowflake_rbac_hygiene
from rules.config import ConfigError
from rules.snowflake_rbac import (
    KIND_ACCOUNTADMIN,
    KIND_PASSWORD_ONLY,
    KIND_PUBLIC_GRANT,
    KIND_UNUSED_ROLE,
    SnowflakeRbacPolicy,
)
from rules.snowflake_rbac_drift import (
    KIND_MISSING,
    KIND_NOT_DECLARED,
    KIND_ROLE_MISSING,
    parse_declared_grants,
)
from tasks.report import artifact_key
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


def role(name: str, created_days_ago: float, deleted: bool = False) -> dict:
    return {"ROLE_ID": len(name), "CREATED_ON": ago(created_days_ago), "DELETED_ON": ago(20) if deleted else None,
            "NAME": name,
            "COMMENT": "", "OWNER": "USERADMIN", "ROLE_TYPE": "ROLE", "ROLE_DATABASE_NAME": None,
            "ROLE_INSTANCE_ID": None, "OWNER_ROLE_TYPE": "ROLE"}


def grant_to(role_name: str, privilege: str, on: str, name: str, catalog: str | None = None,
             schema: str | None = None, deleted: bool = False, granted_to: str = "ROLE") -> dict:
    """A row of GRANTS_TO_ROLES: names as Snowflake stores them, NAME bare, its database and schema
    in TABLE_CATALOG / TABLE_SCHEMA."""
    return {"CREATED_ON": ago(50), "MODIFIED_ON": ago(50), "PRIVILEGE": privilege, "GRANTED_ON": on, "NAME": name,
            "TABLE_CATALOG": catalog, "TABLE_SCHEMA": schema, "GRANTED_TO": granted_to, "GRANTEE_NAME": role_name,
            "GRANT_OPTION": "false", "GRANTED_BY": "SECURITYADMIN", "DELETED_ON": ago(2) if deleted else None,
            "GRANTED_BY_ROLE_TYPE": "ROLE", "OBJECT_INSTANCE": None}


MODEL = "config/snowflake_roles.yaml"


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
                # Holders of the declared roles (config/snowflake_roles.yaml).
                user_grant("ANALYST", "ALICE"), user_grant("ANALYST", "CAROL"),
                user_grant("ANALYST", "MALLORY"),  # granted by hand
                user_grant("ANALYST", "OLDUSER", deleted=True),  # trap: revoked
                user_grant("LOADER", "SVC_ETL"),
                user_grant("Finance", "DAN"),  # trap: quoted, case kept
                user_grant("SCRATCH", "BOB"),  # trap: role not in the model
            ])
            insert_rows(conn, f"{AU}.GRANTS_TO_ROLES", [
                public_grant("USAGE", "DATABASE", "ANALYTICS"),  # trap: allowed by the policy
                public_grant("SELECT", "TABLE", "SALARIES"),
                public_grant("SELECT", "TABLE", "OLD_EXPORT", deleted=True),  # trap: revoked
                # Grants of the declared roles ANALYST, LOADER, "Finance" (REPORTING was dropped).
                grant_to("ANALYST", "USAGE", "WAREHOUSE", "BI_WH", deleted=True),  # trap: revoked, then
                grant_to("ANALYST", "USAGE", "WAREHOUSE", "BI_WH"),  # granted again: present
                grant_to("ANALYST", "USAGE", "DATABASE", "ANALYTICS"),
                grant_to("ANALYST", "USAGE", "SCHEMA", "MARTS", "ANALYTICS"),
                grant_to("ANALYST", "SELECT", "TABLE", "ORDERS", "ANALYTICS", "MARTS"),  # trap: declared in lower case
                grant_to("ANALYST", "SELECT", "TABLE", "SALARIES", "ANALYTICS", "MARTS"),  # granted by hand
                grant_to("ANALYST", "SELECT", "TABLE", "OLD_EXPORT", "ANALYTICS", "MARTS", deleted=True),  # trap: revoked
                grant_to("ANALYST", "OWNERSHIP", "TABLE", "TMP_ANALYSIS", "ANALYTICS", "MARTS"),  # trap: ownership ignored
                grant_to("ANALYST", "USAGE", "ROLE", "SCRATCH"),  # trap: ANALYST holds SCRATCH, a role not in the model
                grant_to("ANALYST", "SELECT", "TABLE", "SALARIES", "RAW", "LANDING",
                         granted_to="DATABASE_ROLE"),  # trap: a database role, not the account role ANALYST
                grant_to("LOADER", "USAGE", "WAREHOUSE", "ETL_WH"),
                grant_to("LOADER", "OPERATE", "WAREHOUSE", "ETL_WH", deleted=True),  # declared; revoked: missing
                grant_to("LOADER", "USAGE", "DATABASE", "RAW", "RAW"),  # trap: catalog filled in for a database
                grant_to("LOADER", "USAGE", "SCHEMA", "LANDING", "RAW", "LANDING"),  # trap: and schema for a schema
                grant_to("LOADER", "CREATE TABLE", "SCHEMA", "LANDING", "RAW"),
                grant_to("LOADER", "INSERT", "TABLE", "EVENTS", "RAW", "LANDING"),
                grant_to("LOADER", "SELECT", "TABLE", "EVENTS", "RAW", "LANDING"),
                grant_to("SYSADMIN", "USAGE", "ROLE", "LOADER"),  # LOADER granted to SYSADMIN: declared
                grant_to("Finance", "SELECT", "VIEW", "Revenue", "ANALYTICS", "MARTS"),  # trap: quoted, case kept
                grant_to("SCRATCH", "SELECT", "TABLE", "SALARIES", "ANALYTICS", "MARTS"),  # trap: role not in the model
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
                role("BI_REPORTS", 200), role("ETL_ROLE", 200), role("ANALYST", 300),
                role("NEW_ROLE", 10),  # trap: too young to judge
                role("SYSADMIN", 900),  # trap: a system role
                role("LOADER", 10), role("Finance", 10),  # declared; too young to judge
                role("REPORTING", 200, deleted=True),  # declared, dropped: missing (and never unused)
            ])
            insert_rows(conn, f"{AU}.QUERY_HISTORY", [
                ran_as("r1", "BI_REPORTS", 120),  # before the 90 days
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
        (KIND_UNUSED_ROLE, "BI_REPORTS", "info"),
        (KIND_UNUSED_ROLE, "ETL_ROLE", "info"),
    ]
    reports = next(f for f in findings if f.resource_id == "BI_REPORTS")
    assert reports.numbers["last_used"] is None  # its last query is older than the history read


def test_declared_grants_drift_reports_each_difference_once_and_resolves_when_fixed(endpoint, store):
    """Planted: a table and a user granted by hand, a declared privilege revoked, a declared role
    that was dropped. Declared-and-present grants, revoked grants (DELETED_ON set), case
    differences, ownership, roles outside the model, a database role of the same name: not reported."""
    name = save_connector(f"sf-{uuid.uuid4().hex[:8]}", PROD)
    policy = SnowflakeRbacPolicy(accountadmin_users=["BREAKGLASS"], public_grants_allowed=["USAGE ON ANALYTICS"],
                                 login_timeout_seconds=5)

    def run(now: datetime) -> list:
        found = snowflake_rbac_hygiene(accounts=[name], endpoints={name: endpoint}, policy=policy,
                                       declared_grants={name: MODEL}, store=store._block_document_name, now=now)
        return sorted((f.kind, f.resource_id) for f in found if f.kind.startswith("snowflake-grant")
                      or f.kind == KIND_ROLE_MISSING)

    assert run(NOW) == [
        (KIND_ROLE_MISSING, "REPORTING"),
        (KIND_MISSING, "LOADER: OPERATE ON WAREHOUSE ETL_WH"),
        (KIND_NOT_DECLARED, "ANALYST: SELECT ON TABLE ANALYTICS.MARTS.SALARIES"),
        (KIND_NOT_DECLARED, "ANALYST: granted to USER MALLORY"),
    ]
    finding = next(f for f in store.findings_of("snowflake-rbac-hygiene", "open")
                   if f["resource_id"] == "ANALYST: SELECT ON TABLE ANALYTICS.MARTS.SALARIES")
    assert "REVOKE SELECT ON TABLE ANALYTICS.MARTS.SALARIES FROM ROLE ANALYST" in finding["reason"]
    assert "(grants as of ACCOUNT_USAGE, up to 2 h behind)" in finding["reason"]
    summary = Artifact.get(artifact_key("snowflake-rbac-hygiene", "summary")).data
    assert "grants as of ACCOUNT_USAGE, up to 2 h behind" in summary

    with seed_connection(endpoint) as conn:  # someone revokes MALLORY's grant: ACCOUNT_USAGE marks the row
        conn.cursor().execute(f"UPDATE {AU}.GRANTS_TO_USERS SET DELETED_ON = %(t)s "
                              "WHERE ROLE = 'ANALYST' AND GRANTEE_NAME = 'MALLORY'", {"t": NOW})
    assert (KIND_NOT_DECLARED, "ANALYST: granted to USER MALLORY") not in run(NOW + timedelta(days=1))
    resolved = [f["resource_id"] for f in store.findings_of("snowflake-rbac-hygiene", "resolved")]
    assert resolved == ["ANALYST: granted to USER MALLORY"]

    # GRANTS_TO_USERS cannot be read (the last use of the seeded account in this module): a
    # finding names the grant, and no drift finding is resolved by a run that could not look.
    with seed_connection(endpoint) as conn:
        conn.cursor().execute(f"DROP TABLE {AU}.GRANTS_TO_USERS")
    assert run(NOW + timedelta(days=2)) == []
    [denied] = [f for f in store.findings_of("snowflake-rbac-hygiene", "open") if f["kind"] == "snowflake-access-denied"]
    assert "GRANTS_TO_USERS" in denied["reason"]
    assert "GRANT DATABASE ROLE SNOWFLAKE.SECURITY_VIEWER TO ROLE OPS_MONITOR" in denied["reason"]
    still_open = {f["resource_id"] for f in store.findings_of("snowflake-rbac-hygiene", "open")}
    assert {"REPORTING", "LOADER: OPERATE ON WAREHOUSE ETL_WH", "ANALYST: SELECT ON TABLE ANALYTICS.MARTS.SALARIES"} <= still_open
    assert [f["resource_id"] for f in store.findings_of("snowflake-rbac-hygiene", "resolved")] == resolved


def test_declared_grants_bad_input_names_the_field_and_the_fix(store, tmp_path):
    name = save_connector(f"sf-{uuid.uuid4().hex[:8]}", PROD)
    with pytest.raises(ConfigError, match="`declared_grants` names \\['other'\\], which are not in `accounts`"):
        snowflake_rbac_hygiene(accounts=[name], declared_grants={"other": MODEL}, store=store._block_document_name)
    with pytest.raises(ConfigError, match="is not a file in this repository"):
        snowflake_rbac_hygiene(accounts=[name], declared_grants={name: str(tmp_path / "roles.yaml")},
                               store=store._block_document_name)
    with pytest.raises(ConfigError, match="field `roles.ANALYST.grants.0`: `name` is required with `object_type: table`"):
        parse_declared_grants({"roles": {"ANALYST": {"grants": [{"privileges": ["SELECT"], "object_type": "table"}]}}},
                              "roles.yaml")
    with pytest.raises(ConfigError, match="field `roles.analyst.grants.0`: a key `on:` is read by YAML as true: write `object_type:`"):
        parse_declared_grants(yaml.safe_load("roles:\n  analyst:\n    grants:\n      - {privileges: [USAGE], on: warehouse, name: x}\n"),
                              "roles.yaml")
    with pytest.raises(ConfigError, match="declared twice"):
        parse_declared_grants({"roles": {"analyst": {}, "ANALYST": {}}}, "roles.yaml")


def test_the_documented_model_format_loads():
    """The example in rules/snowflake_rbac_drift.py's docstring is the format the flow reads."""
    import rules.snowflake_rbac_drift as drift

    example = drift.__doc__.split("```yaml")[1].split("```")[0]
    declared = parse_declared_grants(yaml.safe_load(example), "docstring")
    assert declared.roles == {"ANALYST"} and len(declared.privileges) == 5 and len(declared.memberships) == 3
    assert Path(__file__).resolve().parent.parent.joinpath(MODEL).is_file()


@pytest.mark.parametrize(("written", "resolved"), [
    ("analytics.marts.orders", "ANALYTICS.MARTS.ORDERS"),  # unquoted: upper case, as Snowflake resolves it
    ('"ANALYTICS".marts."ORDERS"', "ANALYTICS.MARTS.ORDERS"),  # quoted upper case is the same object
    ('analytics.marts."Orders"', 'ANALYTICS.MARTS."Orders"'),  # quoted mixed case is another object
    ('"my ""odd"" role"', '"my ""odd"" role"'),
])
def test_identifiers_compare_as_snowflake_resolves_them(written, resolved):
    from rules.snowflake_rbac_drift import normal_identifier

    assert normal_identifier(written) == resolved


@pytest.mark.parametrize(("granted_on", "name", "catalog", "schema", "qualified"), [
    ("TABLE", "ORDERS", "ANALYTICS", "MARTS", "ANALYTICS.MARTS.ORDERS"),
    ("MATERIALIZED VIEW", "Revenue", "ANALYTICS", "MARTS", 'ANALYTICS.MARTS."Revenue"'),  # stored case kept
    ("SCHEMA", "MARTS", "ANALYTICS", None, "ANALYTICS.MARTS"),
    ("SCHEMA", "MARTS", "ANALYTICS", "MARTS", "ANALYTICS.MARTS"),  # the schema not repeated
    ("DATABASE", "ANALYTICS", None, None, "ANALYTICS"),
    ("DATABASE", "ANALYTICS", "ANALYTICS", None, "ANALYTICS"),
    ("WAREHOUSE", "BI_WH", None, None, "BI_WH"),
])
def test_a_grants_to_roles_row_names_its_object_fully(granted_on, name, catalog, schema, qualified):
    from rules.snowflake_rbac_drift import granted_object

    assert granted_object(granted_on, name, catalog, schema) == qualified


def test_revoked_rows_are_not_present_grants():
    """The rule drops rows with DELETED_ON set even if a reader passes them on."""
    from rules.snowflake_rbac_drift import Membership, Privilege, present_grants

    row = {"privilege": "SELECT", "granted_on": "TABLE", "name": "ORDERS", "table_catalog": "ANALYTICS",
           "table_schema": "MARTS", "grantee_name": "ANALYST"}
    present = present_grants(["ANALYST"], [row, row | {"name": "OLD", "deleted_on": ago(1)}],
                             [{"role": "ANALYST", "grantee_name": "ALICE"},
                              {"role": "ANALYST", "grantee_name": "BOB", "deleted_on": ago(1)}])
    assert present.privileges == {Privilege("ANALYST", "SELECT", "TABLE", "ANALYTICS.MARTS.ORDERS")}
    assert present.memberships == {Membership("ANALYST", "USER", "ALICE")}


def test_the_job_role_needs_viewer_roles_only():
    """The drift check reads ACCOUNT_USAGE: no MANAGE GRANTS in the generated role."""
    import flows.snowflake_rbac_hygiene as job
    from deployments.snowflake_grants import grant_script, snowflake_grants

    assert snowflake_grants(job) == {"DATABASE ROLE SNOWFLAKE.SECURITY_VIEWER", "DATABASE ROLE SNOWFLAKE.GOVERNANCE_VIEWER",
                                     "USAGE ON WAREHOUSE <the connector block's warehouse>"}
    assert "MANAGE" not in grant_script(snowflake_grants(job), "OPS_MONITOR", "DATAPLATFORM_OPS")
