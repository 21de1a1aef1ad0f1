"""`make demo`'s orchestration, small: real services start and stop, a job listed like a
prefect.yaml entry runs against the seeded moto account, its message reaches the chat receiver.

The job below exists only for this test (the real jobs plug in through prefect.yaml and
`DEMO_JOBS`); it finds the unassociated Elastic IPs the demo seed plants.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from urllib.parse import urlsplit

import pytest
from prefect import flow
from prefect.settings import PREFECT_API_URL
from prefect_aws import AwsCredentials

from blocks.loading import load_block
from blocks.store import load_store
from deployments.demo import DemoJob, run_demo
from rules.findings import Coverage, Finding
from rules.pricing import BUNDLED, public_ipv4_monthly
from tasks.aws.clients import Account
from tasks.notify import on_flow_failure
from tasks.tell import tell

JOB = "demo-planted"


@flow(name=JOB, on_failure=[on_flow_failure])
def planted_job(aws_credentials: str = "aws", store: str = "ops-store", region: str = "us-east-1") -> None:
    ops_store = load_store(store)
    ec2 = Account(load_block(AwsCredentials, aws_credentials, "aws_credentials")).client("ec2", region)
    idle = [
        a for a in ec2.describe_addresses()["Addresses"]
        if not a.get("AssociationId") and not any(t["Key"] == "dataplatform-ops:keep" for t in a.get("Tags", []))
    ]
    findings = [
        Finding(kind="idle-eip", resource_id=a["AllocationId"], scope=region, reason="not associated",
                monthly_cost_usd=public_ipv4_monthly(BUNDLED, region).usd)
        for a in idle
    ]
    tell(JOB, findings, ops_store, datetime.now(timezone.utc), Coverage({region}))


@flow(name="demo-unmapped", on_failure=[on_flow_failure])
def unmapped_job() -> None:
    raise AssertionError("a job without demo parameters must not run")


@flow(name="demo-needs-teradata", on_failure=[on_flow_failure])
def teradata_job() -> None:
    raise AssertionError("a job whose service is missing must not run")


def _children() -> set[int]:
    """Pids of this process's children."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == os.getpid():
                    found.add(int(pid))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _listening(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_demo_runs_jobs_from_specs_delivers_messages_and_stops_everything():
    api_before, children_before = PREFECT_API_URL.value(), _children()
    lines: list[str] = []
    specs = [
        {"name": "planted", "entrypoint": "tests/test_demo.py:planted_job", "parameters": {"region": "eu-west-1"}},
        {"name": "planted-again", "entrypoint": "tests/test_demo.py:planted_job"},  # one run per flow
        {"name": "unmapped", "entrypoint": "tests/test_demo.py:unmapped_job"},
        {"name": "td", "entrypoint": "tests/test_demo.py:teradata_job"},
        {"name": "not-landed", "entrypoint": "flows/not_landed_yet.py:nothing"},
    ]
    jobs = {
        JOB: DemoJob({"region": "us-east-1"}),
        "demo-needs-teradata": DemoJob(needs=frozenset({"teradata"})),  # a service the demo lacks
        "demo-absent": DemoJob(),
    }

    summary = run_demo(jobs=jobs, specs=specs, seed_scale=1, out=lines.append)

    by_job = {r.job: r for r in summary.results}
    # Scale 1 plants two idle EIPs per region (plus a kept and an associated one): demo
    # parameters override the spec's region.
    planted = by_job[JOB]
    assert (planted.status, planted.findings) == ("Completed", 2)
    assert planted.monthly_usd == pytest.approx(2 * 0.005 * 730, rel=0.01)
    assert by_job["demo-unmapped"].status == "skipped" and "DEMO_JOBS" in by_job["demo-unmapped"].note
    assert "needs teradata" in by_job["demo-needs-teradata"].note
    assert "cannot load flows/not_landed_yet.py" in by_job["not-landed"].note
    assert any("demo-absent" in n and "not in prefect.yaml" in n for n in summary.notes)
    assert len(summary.results) == 4

    # The automation (server side) delivered exactly one message for the job that found something.
    [message] = summary.messages
    assert f"[{JOB}]" in message.text and "2 new" in message.text and "$7.30/mo" in message.text
    assert {"ops-store/ops-store", "aws-credentials/aws", "google-chat-webhook/ops-chat"} <= set(summary.blocks)
    assert summary.automations == sorted(
        ["dataplatform-ops: findings changed", "dataplatform-ops: flow run crashed",
         "dataplatform-ops: flow run failed"])
    report = "\n".join(lines)
    assert "demo-planted" in report and summary.ui_url in report and "Google Chat messages delivered: 1" in report

    # Everything it started is gone, and this process points at the test server again.
    with pytest.raises(ProcessLookupError):
        os.killpg(summary.server_pid, 0)
    assert not _listening(summary.ui_url)
    assert _children() <= children_before
    assert PREFECT_API_URL.value() == api_before
    assert "AWS_ENDPOINT_URL" not in os.environ
