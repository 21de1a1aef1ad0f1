"""Faults: AWS throttling, the store's database dropping connections, a dead endpoint."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import boto3
import psycopg
import pytest
import sqlalchemy
from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError
from prefect_aws import AwsCredentials

from rules.findings import Finding, diff_findings
from tasks.aws.clients import Account, error_summary
from tasks.aws.ec2 import list_volumes

THROTTLED = b"""<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>x</RequestID></Response>"""


def test_throttling_is_retried_with_backoff(aws):
    """moto cannot throttle: the first two HTTP responses are replaced with AWS's real
    RequestLimitExceeded error at botocore's send hook; retry logic and parsing are real."""
    boto3.client("ec2", region_name="us-east-1").create_volume(AvailabilityZone="us-east-1a", Size=8)
    account = Account(AwsCredentials())
    client = account.client("ec2", "us-east-1")
    sent = {"throttled": 0}

    def throttle(request, **_):
        if sent["throttled"] < 2:
            sent["throttled"] += 1
            return AWSResponse(request.url, 503, {}, _Raw(THROTTLED))
        return None

    client.meta.events.register("before-send.ec2.DescribeVolumes", throttle)
    account.client = lambda service, region=None: client  # the collector gets this client
    [volume] = list_volumes(account, "us-east-1")
    assert volume.size_gb == 8 and sent["throttled"] == 2


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_):
        yield self._body

    def read(self, *_):
        return self._body


def test_unreachable_endpoint_is_a_short_named_error():
    creds = AwsCredentials(aws_client_parameters={"endpoint_url": "http://127.0.0.1:9"})
    account = Account(creds)
    with pytest.raises(EndpointConnectionError) as err:
        list_volumes(account, "eu-west-1")
    assert "127.0.0.1:9" in error_summary(err.value)


def test_store_survives_its_database_dropping_every_connection(pg_store, pg_dsn):
    now = datetime(2026, 11, 25, tzinfo=timezone.utc)
    f = Finding(kind="k", resource_id="r1", reason="x")
    pg_store.save_transitions("job", diff_findings({}, [f], now, timedelta(hours=1)), now)
    dbname = psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"]
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                      "where datname = %s and pid <> pg_backend_pid()", (dbname,))
    # A pooled connection died: the next use reconnects (pool_pre_ping) and state is intact.
    assert set(pg_store.open_findings("job")) == {f.key}


def test_a_write_interrupted_mid_transaction_leaves_no_partial_state(pg_store):
    now = datetime(2026, 11, 25, tzinfo=timezone.utc)
    good = Finding(kind="k", resource_id="ok", reason="x")
    pg_store.save_transitions("job", diff_findings({}, [good], now, timedelta(hours=1)), now)
    broken = diff_findings({}, [Finding(kind="k", resource_id="new", reason="x"),
                                Finding(kind="k", resource_id="y" * 400, reason="too long a key")],
                           now, timedelta(hours=1))
    with pytest.raises(sqlalchemy.exc.DataError, match="too long"):
        pg_store.save_transitions("job", broken, now)
    assert set(pg_store.open_findings("job")) == {good.key}  # neither new finding was written
