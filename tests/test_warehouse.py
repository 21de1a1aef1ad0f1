"""WarehouseConnection against real PostgreSQL servers: read-only, statement timeout, and clear
errors for a wrong password, an unreachable host and failed IAM auth.

The shared test server trusts every login, so wrong-password tests start their own throwaway
cluster with password (SCRAM) authentication. IAM auth runs against moto's Redshift API
(AWS cannot run here).
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone

import boto3
import psycopg
import pytest
from prefect_aws import AwsCredentials
from psycopg.conninfo import conninfo_to_dict

from blocks.loading import load_block
from blocks.warehouse import WarehouseConnection, WarehouseUnavailable
from deployments.local_postgres import throwaway_cluster
from flows.query_watch import query_watch
from rules.config import ConfigError

PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="module")
def password_pg() -> Iterator[int]:
    """A throwaway PostgreSQL that wants a password on TCP; yields its port."""
    with throwaway_cluster(password=PASSWORD) as url:
        yield int(conninfo_to_dict(url)["port"])


def block(port: int, password: str | None = PASSWORD, **kw) -> WarehouseConnection:
    fields = dict(host="127.0.0.1", port=port, database="postgres", user="postgres",
                  password=password, connect_timeout_seconds=3)
    return WarehouseConnection(**{**fields, **kw})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_is_read_only_with_a_statement_timeout(password_pg):
    with block(password_pg, statement_timeout_seconds=1).connect() as conn:
        assert conn.execute("select current_user").fetchone() == ("postgres",)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):  # the session default
            conn.execute("create table should_not_exist (id int)")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), conn.transaction():
            conn.execute("create table should_not_exist (id int)")
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("select pg_sleep(3)")
        assert conn.execute("select 1").fetchone() == (1,)  # autocommit: one failure sinks nothing
    # Redshift dialects: every check runs in a `BEGIN READ ONLY` transaction.
    with block(password_pg, dialect="redshift").connect() as conn, pytest.raises(
            psycopg.errors.ReadOnlySqlTransaction), conn.transaction():
        conn.execute("create table should_not_exist (id int)")
    with block(password_pg).connect(read_only=False) as conn:  # actions need a writable session
        assert conn.execute("show transaction_read_only").fetchone() == ("off",)


def test_wrong_password_says_so_without_the_password(password_pg):
    with pytest.raises(WarehouseUnavailable) as err:
        block(password_pg, password="not-the-password").connect()
    assert err.value.problem == "credentials"
    assert "password authentication failed" in str(err.value) and "`password`" in str(err.value)
    assert "not-the-password" not in str(err.value)


def test_unreachable_host_says_so():
    with pytest.raises(WarehouseUnavailable) as err:
        block(closed_port()).connect()
    assert err.value.problem == "unreachable" and "`host` and `port`" in str(err.value)


def test_iam_auth_gets_temporary_credentials(aws, password_pg):
    boto3.client("redshift", region_name="us-east-1").create_cluster(
        ClusterIdentifier="analytics", NodeType="ra3.xlplus", MasterUsername="admin",
        MasterUserPassword="Passw0rd!", ClusterType="single-node")
    creds = AwsCredentials(region_name="us-east-1")
    iam = block(password_pg, password=None, dialect="redshift", iam_auth=True,
                cluster_identifier="analytics", region="us-east-1", aws_credentials=creds)
    user, password = iam._credentials()
    assert user.endswith("postgres") and password  # moto: "IAM:postgres" and a random password
    with pytest.raises(WarehouseUnavailable) as err:  # that user does not exist in our server
        iam.connect()
    assert err.value.problem == "credentials"

    missing = iam.model_copy(update={"cluster_identifier": "nope"})
    with pytest.raises(WarehouseUnavailable) as err:
        missing.connect()
    assert err.value.problem == "iam" and "cluster_identifier" in str(err.value)


def test_iam_auth_needs_cluster_or_workgroup():
    with pytest.raises(ValueError, match="cluster_identifier"):
        WarehouseConnection(host="h", database="d", user="u", dialect="redshift", iam_auth=True)
    with pytest.raises(ValueError, match="only for the redshift dialects"):
        WarehouseConnection(host="h", database="d", user="u", iam_auth=True)


def test_query_watch_with_wrong_password_completes_with_a_finding(password_pg, store):
    name = f"wh-{uuid.uuid4().hex[:8]}"
    block(password_pg, password="wrong-one").save(name)
    state = query_watch(warehouse=name, store=store._block_document_name,
                        now=datetime(2026, 11, 25, tzinfo=timezone.utc), return_state=True)
    assert state.is_completed()
    [f] = state.result()
    assert f.kind == "warehouse-login-failed" and "`user` and `password`" in f.reason
    assert "wrong-one" not in f.model_dump_json()
    [row] = store.findings_of("query-watch", "open")
    assert row["kind"] == "warehouse-login-failed"


def test_iam_policy_of_query_watch_includes_iam_auth():
    import flows.query_watch
    from deployments.iam import flow_actions

    assert flow_actions(flows.query_watch) == {"redshift:GetClusterCredentials",
                                               "redshift-serverless:GetCredentials"}


def test_a_missing_warehouse_block_says_how_to_make_one():
    with pytest.raises(ConfigError) as err:
        load_block(WarehouseConnection, "no-such-warehouse", "warehouse")
    message = str(err.value)
    assert "(parameter `warehouse`)" in message and "Blocks > + > Warehouse Connection" in message
    assert "deployments.blocks" not in message  # that command does not make warehouse blocks
