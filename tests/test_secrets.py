"""Secrets live only in blocks: every flow runs with planted secret values in its blocks, once
as in `make demo` and once more in a failing configuration, and no planted value may appear in
any log, event, artifact, flow or task run, store row, chat message or the servers' own logs.

The failing configurations are the ones that put secrets at risk: AWS keys that IAM no longer
knows (moto's IAM enforcement), a database that refuses the connection, a GCP service account
whose token request is rejected (a local token endpoint: Google's cannot be reached from here),
a Snowflake account that cannot be reached, with a planted key passphrase in its connector block.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from moto import settings as moto_settings
from moto.core.responses import ActionAuthenticatorMixin
from prefect_gcp import GcpCredentials

from blocks.pipelines import IntegrityPipelines
from blocks.warehouse import WarehouseConnection
from deployments.demo import (
    APP_DB_BLOCK,
    DEMO_JOBS,
    DemoCredentials,
    demo,
    free_port,
    plan,
    run_job,
)
from deployments.demo_seed import REGIONS
from deployments.local_snowflake import save_connector
from flows.registry import contracts, deployment_specs
from tests.server_search import server_haystack, store_haystack

PLANTED = DemoCredentials(
    aws_access_key_id="AKIA" + secrets.token_hex(8).upper(),
    aws_secret_access_key="planted-aws-secret-" + secrets.token_urlsafe(16),
    chat_key="planted-chat-key-" + secrets.token_urlsafe(8),
    chat_token="planted-chat-token-" + secrets.token_urlsafe(8),
)
DB_PASSWORD = "planted-db-password-" + secrets.token_urlsafe(8)
GCP_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
GCP_KEY_LINE = GCP_KEY.splitlines()[3]  # 64 characters of key material
SF_PASSPHRASE = "planted-sf-passphrase-" + secrets.token_urlsafe(8)
SF_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
    serialization.BestAvailableEncryption(SF_PASSPHRASE.encode()),
).decode()
SF_KEY_LINE = SF_KEY.splitlines()[3]
SNOWFLAKE_FLOWS = ("snowflake-cost-report", "snowflake-query-cost-watch", "snowflake-query-watch",
                   "snowflake-warehouse-hygiene", "snowflake-rbac-hygiene")

AWS_FLOWS = tuple(contracts())


class _RejectingTokenEndpoint(BaseHTTPRequestHandler):
    """What Google's token endpoint answers for a revoked service-account key."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@contextmanager
def token_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RejectingTokenEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/token"
    finally:
        server.shutdown()


@contextmanager
def iam_enforced() -> Iterator[None]:
    """moto authenticates every call from here on: the planted keys belong to no IAM user."""
    before = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count
    moto_settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count = 0, 0
    try:
        yield
    finally:
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count = before


def failing_blocks(token_uri: str) -> dict[str, dict]:
    """Blocks holding planted secrets that fail, and each flow's parameters pointing at them."""
    closed = {"host": "127.0.0.1", "port": free_port(), "user": "postgres", "password": DB_PASSWORD}
    WarehouseConnection(database="warehouse", **closed).save("broken-warehouse", overwrite=True)
    WarehouseConnection(database="dev", dialect="redshift", cluster_identifier="analytics",
                        region=REGIONS[0], **closed).save("broken-redshift", overwrite=True)
    app = WarehouseConnection.load(APP_DB_BLOCK)  # the live source, now with a password too:
    WarehouseConnection(  # trust auth ignores it; elsewhere the login fails; both are fine here
        host=app.host, port=app.port, database=app.database, user=app.user, password=DB_PASSWORD,
    ).save("planted-app-db", overwrite=True)
    IntegrityPipelines(pipelines=[{
        "name": "orders", "window_days": 7, "freshness_sla_minutes": 60,
        "source": {"connection": "planted-app-db", "table": "public.orders", "day_column": "created_at"},
        "target": {"connection": "broken-warehouse", "table": "raw.orders", "day_column": "created_at",
                   "freshness_column": "loaded_at"},
    }]).save("broken-pipelines", overwrite=True)
    GcpCredentials(service_account_info={
        "type": "service_account", "project_id": "planted-project", "private_key_id": secrets.token_hex(20),
        "private_key": GCP_KEY, "client_email": "ops@planted-project.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": token_uri,
    }).save("planted-gcp", overwrite=True)
    bigquery = {"emulator_endpoint": None, "gcp_credentials": "planted-gcp", "projects": ["planted-project"]}
    # Nothing listens on the endpoint: the login is refused after the key was unlocked with the passphrase.
    save_connector("broken-snowflake", "acme-prod", passphrase=SF_PASSPHRASE, private_key=SF_KEY)
    snowflake = {"accounts": ["broken-snowflake"], "policy": {"login_timeout_seconds": 3},
                 "endpoints": {"broken-snowflake": f"http://127.0.0.1:{free_port()}"}}
    return {
        **{name: {} for name in AWS_FLOWS},  # same blocks, but IAM no longer knows the keys
        "query-watch": {"warehouse": "broken-warehouse"},
        "redshift-health": {"warehouse": "broken-redshift"},
        "data-integrity": {"pipelines_block": "broken-pipelines"},
        "bigquery-cost-report": bigquery,
        "bigquery-query-cost-watch": bigquery,
        **dict.fromkeys(SNOWFLAKE_FLOWS, snowflake),
    }


@pytest.mark.slow
def test_no_planted_secret_reaches_logs_events_artifacts_store_or_chat():
    out: list[str] = []
    with demo(seed_scale=1, out=out.append, credentials=PLANTED) as run, token_endpoint() as token_uri:
        happy = {r.job: r for r in run.summary.results}
        assert {j for j, r in happy.items() if r.status == "Completed"} == set(DEMO_JOBS)

        failing = failing_blocks(token_uri)
        runs, _, _ = plan(deployment_specs(), DEMO_JOBS, run.env)
        assert {name for name, _, _ in runs} == set(failing)  # every flow gets a failing run
        with iam_enforced():
            failed = {name: run_job(name, fl, {**params, **failing[name]}, run.store, out.append)
                      for name, fl, params in runs}
        before = len(run.chat.received)
        run.chat.settle(quiet=3, timeout=60)
        assert len(run.chat.received) > before  # the failures were announced

        haystack = "\n".join(
            [m.raw.decode() for m in run.chat.received] + server_haystack()
            + store_haystack(run.store.engine) + out
            + [(run.server.home / "server.log").read_text(errors="replace")]
        )

    # The search saw every flow and each failure's cause: it is not vacuous.
    for name in failing:
        assert name in haystack, name
    assert "InvalidClientTokenId" in haystack or "UnrecognizedClientException" in haystack
    assert "invalid_grant" in haystack and "Connection refused" in haystack
    # Each run got past its configuration to the failing system (some report it, some fail).
    assert not [n for n, r in failed.items() if "ConfigError" in r.note], {n: r.note for n, r in failed.items()}
    assert sum(r.status != "Completed" for r in failed.values()) >= 3, {n: r.status for n, r in failed.items()}

    planted = {
        "AWS secret key": PLANTED.aws_secret_access_key, "webhook key": PLANTED.chat_key,
        "webhook token": PLANTED.chat_token, "database password": DB_PASSWORD,
        "GCP private key": GCP_KEY_LINE,
        "Snowflake key passphrase": SF_PASSPHRASE, "Snowflake private key": SF_KEY_LINE,
    }
    leaked = [what for what, value in planted.items() if value in haystack]
    assert not leaked, f"planted secrets found: {leaked}"
