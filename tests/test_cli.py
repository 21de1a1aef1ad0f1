"""The `dataplatform-ops` command, driven as a person would: the installed console script in a
subprocess, against the session's Prefect server and a moto server (in this process, so the
IAM-enforcement switch of `tests/test_least_privilege.py` reaches it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from prefect.settings import PREFECT_API_URL
from prefect_aws import AwsCredentials

from blocks.google_chat import GoogleChatWebhook
from deployments.demo import free_port, moto_server
from deployments.iam import flow_actions, policies
from flows import idle_resources as idle_module
from flows.registry import JOBS
from tasks.aws.probe import ENTERED, PROBES
from tests.least_privilege import iam_user_with

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = shutil.which("dataplatform-ops", path=str(Path(sys.executable).parent)) or "dataplatform-ops"


def cli(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SCRIPT, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), **env},
    )


@pytest.fixture
def moto(monkeypatch) -> Iterator[str]:
    """A moto server; this process's boto3 clients (the seeding, the IAM user) go to it too."""
    with moto_server() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        yield url


def _creds(**client_parameters) -> str:
    name = f"aws-{uuid.uuid4().hex[:8]}"
    AwsCredentials(region_name="us-east-1", aws_client_parameters=client_parameters).save(name)
    return name


def test_run_on_moto_prints_the_findings_and_the_message_and_exits_0(moto, store):
    ec2 = boto3.client("ec2", region_name="us-east-1")
    eips = sorted(ec2.allocate_address(Domain="vpc")["AllocationId"] for _ in range(2))
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=20)["VolumeId"]

    done = cli("run", "idle-resources", "--regions", "us-east-1", "--set", f"aws_credentials={_creds()}",
               "--set", f"store={store._block_document_name}", "--set", "policy.volume_min_age_days=0",
               "--set", "policy.refresh_prices=false")

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    table = out.split("## Findings table", 1)[1].split("## Chat message", 1)[0]
    assert all(resource in table for resource in [*eips, volume])
    assert table.count("idle-elastic-ip") == 2 and table.count("unattached-volume") == 1
    message = out.split("## Chat message", 1)[1]
    assert "[idle-resources] 3 new" in message and all(r in message for r in [*eips, volume])
    assert out.rstrip().endswith("idle-resources: Completed")


def test_run_that_covers_nothing_exits_non_zero_and_says_why(store):
    # Nothing listens on port 9; one attempt, so the refusal is quick (the block's botocore config wins).
    creds = _creds(endpoint_url="http://127.0.0.1:9", config={"retries": {"max_attempts": 1}})

    done = cli("run", "idle-resources", "--regions", "eu-west-1", "--set", f"aws_credentials={creds}",
               "--set", f"store={store._block_document_name}")

    assert done.returncode == 1, done.stdout[-3000:]
    assert "Not covered this run" in done.stdout and "127.0.0.1:9" in done.stdout
    assert "idle-resources: Failed" in done.stderr and "could not read anything" in done.stderr


def test_bad_input_is_one_line_naming_the_field_before_any_run():
    done = cli("run", "idle-resources", "--set", "policy.volume_min_age_days=-3")
    assert done.returncode == 2 and done.stderr.startswith("error: parameters of idle-resources")
    assert "volume_min_age_days" in done.stderr and "Traceback" not in done.stderr
    unknown = cli("run", "idle-resources", "--set", "region=eu-west-1")
    assert unknown.returncode == 2 and "has no parameter `region`" in unknown.stderr and "regions" in unknown.stderr


def test_check_names_a_missing_permission_under_iam_enforcement(moto, store, chat):
    chat_block = f"chat-{uuid.uuid4().hex[:8]}"
    GoogleChatWebhook(url=chat.url).save(chat_block)
    granted = flow_actions(idle_module, read_only=True) - {"ec2:DescribeVolumes"}
    with iam_user_with(granted) as creds:
        done = cli("check", "idle-resources", "--regions", "us-east-1", "--set", f"aws_credentials={creds}",
                   "--set", f"store={store._block_document_name}", "--chat-block", chat_block)

    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    [line] = [ln for ln in done.stdout.splitlines() if ln.strip().startswith("idle-resources ")]
    assert "/us-east-1" in line and "missing ec2:DescribeVolumes" in line
    assert line.count("missing") == 1 and "," not in line.split("missing", 1)[1].split(";")[0]
    assert f"ok     {creds} (AwsCredentials, region us-east-1)" in done.stdout and "problems found" in done.stdout


def test_every_read_permission_of_every_job_has_a_harmless_probe():
    from deployments.iam import flow_modules

    declared = set().union(*(flow_actions(m, read_only=True) for m in flow_modules().values()))
    assert declared - ENTERED <= set(PROBES), sorted(declared - ENTERED - set(PROBES))


def test_jobs_lists_every_job_and_iam_prints_the_generated_policy():
    listed = cli("jobs")
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert all(f"{name}: " in listed.stdout for name in JOBS)
    assert "ec2:DescribeAddresses" in listed.stdout and "cron 0 6 * * * UTC" in listed.stdout

    policy = cli("iam", "idle-resources", "--read-only")
    assert policy.returncode == 0 and json.loads(policy.stdout) == policies("idle-resources", read_only=True)


def test_setup_against_a_server_that_never_comes_up_waits_then_says_so_in_one_line(tmp_path):
    silent = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    done = cli("setup", "--store-url", f"sqlite:///{tmp_path / 'store.db'}", "--aws-region", "eu-west-1",
               "--wait-seconds", "2", PREFECT_API_URL=silent)
    assert done.returncode == 2
    assert done.stdout.startswith(f"waiting up to 2 s for the Prefect API at {silent}")
    assert done.stderr.count("\n") == 1 and "did not answer within 2 s" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_setup_without_a_region_is_refused_before_anything_is_saved(tmp_path):
    env = {k: "" for k in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    done = cli("setup", "--store-url", f"sqlite:///{tmp_path / 'store.db'}", **env)
    assert done.returncode == 2 and done.stderr.startswith("error: --aws-region: the `aws` credentials block")
