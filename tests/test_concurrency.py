"""Runs that overlap: real concurrent flow runs (threads of this process, each its own run on the
Prefect server) against the real PostgreSQL store and the chat receiver, and the global
concurrency limits per AWS account and per warehouse on the same server."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

from blocks.store import load_store
from flows.queue_health import CONTRACT as QUEUE_HEALTH
from rules.findings import Coverage, Finding
from tasks.limits import AWS_ACCOUNT_SLOTS, ensure_limit, limit_name, warehouse_slots
from tasks.notify import on_flow_failure
from tasks.runner import job_flow, run_aws
from tasks.tell import tell
from tests.test_contract import creds

JOB = "overlap-job"
RUNS = 6
# Every run waits here just before its tell step, so all of them decide at the same moment.
gate = threading.Barrier(RUNS)


@flow(name=JOB, on_failure=[on_flow_failure])
def overlapping_job(store: str, resources: list[str]) -> None:
    ops_store = load_store(store)
    found = [Finding(kind="planted", resource_id=r, scope="test", reason=f"{r} was planted") for r in resources]
    gate.wait(timeout=120)
    tell(JOB, found, ops_store, datetime.now(timezone.utc), Coverage({"test"}))


def run_together(resources: list[str], store: str) -> list:
    gate.reset()
    with ThreadPoolExecutor(RUNS) as pool:
        return list(pool.map(lambda _: overlapping_job(store, resources, return_state=True), range(RUNS)))


def test_overlapping_runs_announce_each_change_once_and_keep_one_row(routed, pg_store):
    store = pg_store._block_document_name
    states = run_together(["vol-1"], store)
    assert [s.name for s in states] == ["Completed"] * RUNS
    [opened] = routed.wait_for(1)
    assert routed.settle(quiet=3) == [opened]
    assert "vol-1" in opened.text
    [row] = pg_store.findings_of(JOB)
    assert (row["status"], row["first_seen"]) == ("open", row["last_alerted"])

    states = run_together([], store)  # the finding is gone: every run sees it, one resolves it
    assert [s.name for s in states] == ["Completed"] * RUNS
    messages = routed.wait_for(2)
    assert routed.settle(quiet=3) == messages
    assert "resolved" in messages[1].text.lower() and "vol-1" in messages[1].text
    [row] = pg_store.findings_of(JOB)
    assert row["status"] == "resolved"


def test_runs_of_one_account_share_its_concurrency_limit(aws, store):
    """Two runs over three regions each; the account's limit set to 2: never more than two
    regions of that account are read at once, across both runs."""
    name = limit_name("aws-account", "123456789012")
    assert ensure_limit(name, AWS_ACCOUNT_SLOTS) == AWS_ACCOUNT_SLOTS  # created on first use
    with get_client(sync_client=True) as client:  # an operator lowers it; runs must not reset it
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=2))
    reading, peak, lock = [0], [0], threading.Lock()

    def collect(target, policy, ctx):
        with lock:
            reading[0] += 1
            peak[0] = max(peak[0], reading[0])
        try:
            time.sleep(0.5)
            return QUEUE_HEALTH.collect(target, policy, ctx)
        finally:
            with lock:
                reading[0] -= 1

    job = replace(QUEUE_HEALTH, name="limited-queue-health", collect=collect)

    @job_flow(job)
    def limited(regions: list[str], aws_credentials: str, store: str):
        return run_aws(job, job.policy(), regions=regions, role_arns=None, aws_credentials=aws_credentials,
                       store=store, options={"name_prefix": ""})

    aws_name = creds(region_name="us-east-1")
    regions = ["us-east-1", "eu-west-1", "ap-south-1"]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: limited(regions, aws_name, store._block_document_name), range(2)))
    assert all(not r.errors for r in results)
    assert peak[0] == 2
    assert ensure_limit(name, AWS_ACCOUNT_SLOTS) == 2


def test_a_warehouse_grants_no_more_connections_than_its_limit():
    name = limit_name("warehouse", "db.example:5439/analytics")
    assert "/" not in name
    ensure_limit(name, 4)
    with get_client(sync_client=True) as client:
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=3))
    with warehouse_slots("db.example:5439/analytics", want=8) as granted:
        assert granted == 3
        with get_client(sync_client=True) as client:
            assert client.read_global_concurrency_limit_by_name(name).active_slots == 3
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(name).active_slots == 0
