"""The production engine, small: a Prefect server on PostgreSQL with its scheduler, two process
workers on one pool, a deployment of prefect.yaml registered by the real CLI. The workers start
outside the checkout, so a run finds its code only through the pull step
(`DATAPLATFORM_OPS_HOME`). The store is PostgreSQL too; AWS is a moto server.

One deployment stands for all (queue-health: each run is a process importing the collection,
which this two-core budget affords a few times); tests/test_deploy.py registers every one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from uuid import UUID

import boto3
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.schedules import IntervalSchedule
from prefect_aws import AwsCredentials
from prefect_aws.client_parameters import AwsClientParameters
from sqlalchemy.engine import make_url

from blocks.google_chat import GoogleChatWebhook
from blocks.store import OpsStore
from deployments.automations import apply_automations
from deployments.chat_receiver import ChatReceiver
from deployments.demo import moto_server, prefect_server, stop_process_group, use_server
from deployments.local_postgres import to_url
from tasks.fan_out import FAN_OUT, PART
from tests.conftest import fresh_database
from tests.test_queue_health import make_queue

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
POOL = "dataplatform-ops-local"
NAME = "queue-health"
WORKERS = ("engine-worker-1", "engine-worker-2")


@dataclass
class Engine:
    deployment_id: UUID
    chat: ChatReceiver
    store: OpsStore
    worker_logs: list[Path]


@contextmanager
def process_worker(api_url: str, home: Path, name: str) -> Iterator[Path]:
    """`prefect worker start` on the pool, in `home` (not the checkout); yields its log file."""
    home.mkdir()
    log_path = home / "worker.log"
    env = {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_HOME": str(home),
           "DATAPLATFORM_OPS_HOME": str(ROOT), "PREFECT_WORKER_QUERY_SECONDS": "1"}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--name", name,
             "--type", "process"],
            cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    try:
        yield log_path
    finally:
        stop_process_group(process, grace=5)  # a worker may not stop on SIGTERM alone (FACTS)


@pytest.fixture(scope="module")
def engine(pg_admin, tmp_path_factory) -> Iterator[Engine]:
    home = tmp_path_factory.mktemp("engine")
    with ExitStack() as stack:
        server_db = stack.enter_context(fresh_database(pg_admin))
        store_db = stack.enter_context(fresh_database(pg_admin))
        database_url = make_url(to_url(server_db)).set(drivername="postgresql+asyncpg")
        server = stack.enter_context(prefect_server(
            home, database_url=database_url.render_as_string(hide_password=False), scheduler=True,
            PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="1"))
        endpoint = stack.enter_context(moto_server())
        server.wait_healthy()
        stack.enter_context(use_server(server))
        with get_client(sync_client=True) as client:
            client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
        logs = [stack.enter_context(process_worker(server.api_url, home / name, name)) for name in WORKERS]

        # The blocks prefect.yaml's parameters name, as an operator saves them.
        chat = stack.enter_context(ChatReceiver())
        store = OpsStore(url=to_url(store_db))
        store.save("ops-store")
        AwsCredentials(region_name="us-east-1", aws_client_parameters=AwsClientParameters(
            endpoint_url=endpoint)).save("aws")
        GoogleChatWebhook(url=chat.url, max_backoff_seconds=0.05, min_interval_seconds=0).save("ops-chat")
        apply_automations(chat_block="ops-chat")

        sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint)
        dlq = make_queue(sqs, "orders-dlq")
        make_queue(sqs, "orders", dlq)
        sqs.send_message(QueueUrl=dlq, MessageBody="lost order")

        deployed = subprocess.run(
            [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--name", NAME],
            cwd=ROOT, env={**os.environ, "PREFECT_API_URL": server.api_url},
            capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(f"{NAME}/{NAME}")
        yield Engine(deployment.id, chat, store, logs)


def wait_final(flow_run_ids: list[UUID], timeout: float = 600) -> list:  # a busy 2-core machine
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = [client.read_flow_run(i) for i in flow_run_ids]
            if all(r.state.is_final() for r in runs):
                return runs
            if time.monotonic() > deadline:
                raise AssertionError(f"not final after {timeout} s: {[(r.name, r.state.name) for r in runs]}")
            time.sleep(1)


def test_scheduled_and_on_demand_runs_complete_on_the_workers_and_tell_once(engine):
    """A schedule fires through the server's scheduler while two on-demand runs are asked for at
    once: all three run on the pool's workers and find the one dead-lettered message; the store
    records it once and chat gets one message. (Which worker takes which run is the workers'
    race: both must be up, at least one of them ran the runs.)"""
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(engine.deployment_id)
        assert deployment.work_pool_name == POOL and deployment.pull_steps  # as prefect.yaml says
        start = datetime.now(timezone.utc) + timedelta(seconds=2)
        client.create_deployment_schedules(engine.deployment_id, [(
            IntervalSchedule(interval=timedelta(hours=1), anchor_date=start), True)])
        on_demand = [client.create_flow_run_from_deployment(engine.deployment_id).id for _ in range(2)]
        deadline = time.monotonic() + 120
        while not (scheduled := [r.id for r in client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[engine.deployment_id])))
                if r.auto_scheduled and r.expected_start_time <= start + timedelta(seconds=1)]):
            assert time.monotonic() < deadline, "the scheduler created no run"
            time.sleep(1)
    runs = wait_final(on_demand + scheduled)
    assert [r.state.name for r in runs] == ["Completed"] * len(runs), [r.state.message for r in runs]

    [message] = engine.chat.wait_for(1, timeout=60)
    assert engine.chat.settle(quiet=3) == [message]
    assert "orders-dlq" in message.text
    [finding] = engine.store.findings_of(NAME)
    assert finding["resource_id"] == "orders-dlq" and finding["status"] == "open"
    with get_client(sync_client=True) as client:
        workers = {w.name: w.status for w in client.read_workers_for_work_pool(POOL)}
    assert {workers.get(name) for name in WORKERS} == {"ONLINE"}, workers
    ran_on = {log.parent.name for log in engine.worker_logs for r in runs if str(r.id) in log.read_text()}
    assert ran_on and ran_on <= set(WORKERS), ran_on


def test_a_failing_deployment_run_sends_its_alert(engine):
    before = len(engine.chat.received)
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run_from_deployment(
            engine.deployment_id, parameters={"store": "no-such-store"})
    [run] = wait_final([flow_run.id])
    assert run.state.is_failed()
    engine.chat.wait_for(before + 1, timeout=60)
    [message] = engine.chat.settle(quiet=3)[before:]
    assert f"[{NAME}/{NAME}] run {run.name} Failed" in message.text
    assert "no-such-store" in message.text


def test_a_sweep_of_accounts_fans_out_one_run_per_account_and_tells_once(engine):
    """A run tagged for fan-out with two roles: three account runs (own account and each role)
    on the pool's workers, each reading only its account; the parent merges them and tells once."""
    endpoint = AwsCredentials.load("aws").aws_client_parameters.endpoint_url
    arns = [f"arn:aws:iam::{account}:role/ops-reader" for account in ("111111111111", "222222222222")]
    sts = boto3.client("sts", region_name="us-east-1", endpoint_url=endpoint)
    for arn in arns:  # a dead-lettered message in each role's account
        creds = sts.assume_role(RoleArn=arn, RoleSessionName="seed")["Credentials"]
        sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint,
                           aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                           aws_session_token=creds["SessionToken"])
        dlq = make_queue(sqs, "billing-dlq")
        make_queue(sqs, "billing", dlq)
        sqs.send_message(QueueUrl=dlq, MessageBody="lost invoice")
    before = len(engine.chat.received)
    with get_client(sync_client=True) as client:
        parent = client.create_flow_run_from_deployment(
            engine.deployment_id, parameters={"role_arns": arns, "regions": ["us-east-1"]}, tags=[FAN_OUT])
        [run] = wait_final([parent.id])
        children = [r for r in client.read_flow_runs() if PART in (r.tags or [])]
    assert run.state.is_completed(), run.state.message
    assert len(children) == 3 and all(c.state.is_completed() for c in children)
    open_dlqs = {(f["scope"], f["resource_id"]) for f in engine.store.findings_of(NAME, "open")}
    assert {("111111111111/us-east-1", "billing-dlq"), ("222222222222/us-east-1", "billing-dlq"),
            ("123456789012/us-east-1", "orders-dlq")} <= open_dlqs
    engine.chat.wait_for(before + 1, timeout=120)
    [message] = engine.chat.settle(quiet=3)[before:]  # one message for the whole sweep
    assert "111111111111/us-east-1" in message.text and "222222222222/us-east-1" in message.text
