"""Faults: AWS throttling, the store's database dropping connections, a dead or silent endpoint."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import httpx
import psycopg
import pytest
import sqlalchemy
from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.runner import Runner
from prefect.states import Cancelling
from prefect_aws import AwsCredentials

import tasks.runner as runner
from blocks.store import load_store
from deployments.demo import moto_server
from flows.idle_resources import idle_resources
from rules.findings import Coverage, Finding, diff_findings
from rules.idle import IdlePolicy
from tasks.aws.clients import RETRY_CONFIG, Account, error_summary
from tasks.aws.ec2 import list_volumes
from tasks.notify import on_flow_failure
from tasks.tell import tell
from tests.conftest import route_to

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
    # One retry, not the collection's eight with back-off (about 40 s of waiting): the error that
    # ends the attempts is the same. A block's `config` taking precedence is tested below.
    creds = AwsCredentials(aws_client_parameters={
        "endpoint_url": "http://127.0.0.1:9", "config": {"retries": {"max_attempts": 1}}})
    account = Account(creds)
    with pytest.raises(EndpointConnectionError) as err:
        list_volumes(account, "eu-west-1")
    assert "127.0.0.1:9" in error_summary(err.value)


def test_store_survives_its_database_dropping_every_connection(pg_store, pg_dsn):
    now = datetime(2026, 11, 25, tzinfo=timezone.utc)
    f = Finding(kind="k", resource_id="r1", reason="x")
    pg_store.save_transitions("job", diff_findings({}, [f], now, timedelta(hours=1), Coverage({""})), now)
    dbname = psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"]
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                      "where datname = %s and pid <> pg_backend_pid()", (dbname,))
    # A pooled connection died: the next use reconnects (pool_pre_ping) and state is intact.
    assert set(pg_store.open_findings("job")) == {f.key}


def refuse_connections(admin: str, dbname: str) -> None:
    """The store's database goes away for good: no new connections, the open ones cut."""
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
        conn.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s",
                     (dbname,))


@flow(name="store-outage", on_failure=[on_flow_failure])
def store_outage_job(store: str, admin: str, dbname: str) -> None:
    ops_store = load_store(store)
    refuse_connections(admin, dbname)  # mid-run, after the store was checked
    tell("store-outage", [Finding(kind="k", resource_id="r1", reason="x")], ops_store,
         datetime.now(timezone.utc), Coverage({""}))


def test_store_down_mid_run_the_failure_still_reaches_chat_and_says_so(chat, pg_store, pg_dsn, pg_admin):
    route_to(chat, outbox=pg_store)  # the chat block's outbox is the store that goes down
    dbname = psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"]
    state = store_outage_job(pg_store._block_document_name, pg_admin, dbname, return_state=True)
    assert state.is_failed()
    [message] = chat.wait_for(1)
    assert "[store-outage] run " in message.text
    assert "not currently accepting connections" in message.text  # why the run failed
    assert f"The ops store {pg_store.safe_url} (OperationalError) is down" in message.text
    assert chat.settle(quiet=2) == [message]


def test_a_write_interrupted_mid_transaction_leaves_no_partial_state(pg_store):
    now = datetime(2026, 11, 25, tzinfo=timezone.utc)
    good = Finding(kind="k", resource_id="ok", reason="x")
    pg_store.save_transitions("job", diff_findings({}, [good], now, timedelta(hours=1), Coverage({""})), now)
    broken = diff_findings({}, [Finding(kind="k", resource_id="new", reason="x"),
                                Finding(kind="k", resource_id="y" * 400, reason="too long a key")],
                           now, timedelta(hours=1), Coverage({""}))
    with pytest.raises(sqlalchemy.exc.DataError, match="too long"):
        pg_store.save_transitions("job", broken, now)
    assert set(pg_store.open_findings("job")) == {good.key}  # neither new finding was written


class _RegionBlackHole(BaseHTTPRequestHandler):
    """Forwards AWS requests to moto, except those signed for `region`: never answered."""

    upstream = ""
    region = ""
    hold = 5.0  # seconds the request is held before the connection is dropped unanswered

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if f"/{self.region}/" in self.headers.get("Authorization", ""):
            time.sleep(self.hold)  # longer than the client waits
            return
        reply = httpx.request(self.command, self.upstream + self.path, content=body,
                              headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
        self.send_response(reply.status_code)
        for key, value in reply.headers.items():
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply.content)))
        self.end_headers()
        self.wfile.write(reply.content)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    def log_message(self, *args) -> None:
        pass


@contextmanager
def eu_west_1_never_answers(hold: float) -> Iterator[str]:
    """moto with a volume in us-east-1 and eu-west-1, behind a proxy that holds every eu-west-1
    request `hold` seconds and drops it unanswered; -> the proxy's endpoint URL."""
    with moto_server() as moto:
        for region in ("us-east-1", "eu-west-1"):
            boto3.client("ec2", region_name=region, endpoint_url=moto).create_volume(
                AvailabilityZone=f"{region}a", Size=100, VolumeType="gp3")
        handler = type("Handler", (_RegionBlackHole,), {"upstream": moto, "region": "eu-west-1", "hold": hold})
        proxy = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{proxy.server_address[1]}"
        finally:
            proxy.shutdown()


def test_a_region_whose_endpoint_times_out_is_reported_and_the_others_complete(store):
    with eu_west_1_never_answers(hold=5) as endpoint:
        name = f"aws-{uuid.uuid4().hex[:8]}"
        # The block's botocore config (1 s read timeout, no retries) wins over the collection's.
        AwsCredentials(region_name="us-east-1", aws_client_parameters={
            "endpoint_url": endpoint,
            "config": {"read_timeout": 1, "retries": {"mode": "standard", "total_max_attempts": 1}},
        }).save(name)
        result = idle_resources(policy=IdlePolicy(refresh_prices=False, volume_min_age_days=0),
                                regions=["us-east-1", "eu-west-1"], aws_credentials=name,
                                store=store._block_document_name)
    found = {f["scope"] for f in store.findings_of("idle-resources", status="open")}
    assert found == {"123456789012/us-east-1"}  # the healthy region was swept
    assert result.errors and all(where.startswith("123456789012/eu-west-1") for where in result.errors)
    assert all("Read timeout" in why for why in result.errors.values())


def test_an_endpoint_that_never_answers_costs_one_bounded_wait_and_the_others_complete(store, monkeypatch):
    """The collection's own timeouts (no block override): a region that accepts and never
    answers is "no answer in N s" within its budget plus one read timeout."""
    monkeypatch.setattr(runner, "TARGET_SECONDS", 8)
    with eu_west_1_never_answers(hold=300) as endpoint:
        name = f"aws-{uuid.uuid4().hex[:8]}"
        AwsCredentials(region_name="us-east-1", aws_client_parameters={"endpoint_url": endpoint}).save(name)
        started = time.monotonic()
        result = idle_resources(policy=IdlePolicy(refresh_prices=False, volume_min_age_days=0),
                                regions=["us-east-1", "eu-west-1"], aws_credentials=name,
                                store=store._block_document_name)
        took = time.monotonic() - started
    assert took < 8 + RETRY_CONFIG.read_timeout + 20, took  # budget + one read timeout + the run itself
    assert {f["scope"] for f in store.findings_of("idle-resources", status="open")} == {"123456789012/us-east-1"}
    assert result.errors and all(where.startswith("123456789012/eu-west-1") for where in result.errors)
    assert all("no answer in 8 s" in why for why in result.errors.values()), result.errors


def test_cancelling_a_run_stuck_on_a_silent_endpoint_takes_effect_within_seconds(store):
    """A deployment run served by a real runner (a subprocess per run) waits on an endpoint that
    never answers; cancelling it ends it in seconds, not after its 60 s target budget."""
    with eu_west_1_never_answers(hold=300) as endpoint:
        name = f"aws-{uuid.uuid4().hex[:8]}"
        AwsCredentials(region_name="eu-west-1", aws_client_parameters={"endpoint_url": endpoint}).save(name)
        with served(idle_resources, name="cancel-test") as deployment_id, get_client(sync_client=True) as client:
            run = client.create_flow_run_from_deployment(deployment_id, parameters={
                "regions": ["eu-west-1"], "aws_credentials": name, "store": store._block_document_name,
                "policy": {"refresh_prices": False}})
            until(lambda: client.read_flow_run(run.id).state.is_running(), 120, "the run to start")
            time.sleep(3)  # inside the unanswered call now: the run itself would wait 60 s
            asked = time.monotonic()
            client.set_flow_run_state(run.id, Cancelling(), force=True)
            until(lambda: client.read_flow_run(run.id).state.is_cancelled(), 30, "the run to be cancelled")
            took = time.monotonic() - asked
    # Without the stop it took 30 s: the runner's grace, then SIGKILL. One read timeout (15 s) at most.
    print(f"cancelled {took:.1f} s after the request")
    assert took < 22, f"cancelled after {took:.0f} s"


def until(ready, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}")
        time.sleep(0.3)


@contextmanager
def served(flow_, name: str) -> Iterator:
    """A real runner in a background thread, polling every second; yields the deployment id."""
    runner = Runner(name=f"{name}-{uuid.uuid4().hex[:6]}", query_seconds=1, pause_on_shutdown=False)
    loop = asyncio.new_event_loop()
    ids: list = []

    async def serve() -> None:
        ids.append(await runner.aadd_deployment(await flow_.ato_deployment(name=name)))
        await runner.start()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    until(lambda: ids, 60, "the runner")
    try:
        yield ids[0]
    finally:
        asyncio.run_coroutine_threadsafe(runner.astop(), loop).result(timeout=60)
        thread.join(timeout=60)


def test_bad_input_is_one_line_in_the_log_and_in_chat_with_the_traceback_at_debug(routed, store):
    """Prefect logs a failed run's exception with its traceback; an error that already names the
    field and the fix (`Explained`) is one line, its traceback only in the debug log."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level=logging.DEBUG)
    handler.emit = records.append
    logger = logging.getLogger("prefect.flow_runs")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        state = idle_resources(regions=["eu-west"], store=store._block_document_name, return_state=True)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert state.is_failed()
    errors = [r for r in records if r.levelno >= logging.ERROR]
    assert errors and not any(r.exc_info for r in errors)
    assert any("`regions`: 'eu-west' is not a region name" in r.getMessage() for r in errors)
    assert any(r.levelno == logging.DEBUG and r.exc_info and "Traceback" not in r.getMessage() for r in records)
    [message] = routed.wait_for(1)
    assert "`regions`: 'eu-west' is not a region name" in message.text
    assert "Traceback" not in message.text
