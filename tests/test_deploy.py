"""`prefect --no-prompt deploy --all` registers every deployment of prefect.yaml, unattended.

Runs the real CLI, as the README tells a user to, against the session's Prefect server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists
from prefect.settings import PREFECT_API_URL

from deployments.serve import PREFECT_YAML, deployment_specs, load_flow

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
POOL = "dataplatform-ops-local"


def test_deploy_all_registers_every_deployment_non_interactively():
    specs = deployment_specs()
    if not specs:
        pytest.skip("prefect.yaml lists no deployments yet")
    with get_client(sync_client=True) as client:
        try:  # what `prefect work-pool create dataplatform-ops-local --type process` does
            client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
        except ObjectAlreadyExists:
            pass

    result = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
        cwd=ROOT, env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()},
        capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    pull = yaml.safe_load(PREFECT_YAML.read_text())["pull"]
    with get_client(sync_client=True) as client:
        for spec in specs:
            deployment = client.read_deployment_by_name(f"{load_flow(spec['entrypoint']).name}/{spec['name']}")
            assert deployment.work_pool_name == POOL
            assert "dataplatform-ops" in deployment.tags
            assert deployment.parameters == (spec.get("parameters") or {})
            assert len(deployment.schedules) == len(spec.get("schedules") or [])
            assert deployment.pull_steps == pull  # resolved on the worker, not at deploy time


def test_every_deployment_goes_to_another_pool_with_its_job_variables():
    """The README's ECS path: the real CLI, once per deployment (`deploy --all` ignores --pool)."""
    with get_client(sync_client=True) as client:
        try:  # an ECS pool needs no AWS to be registered; only its worker does
            client.create_work_pool(WorkPoolCreate(name="dataplatform-ops-ecs", type="ecs"))
        except ObjectAlreadyExists:
            pass
    result = subprocess.run(
        [sys.executable, "-m", "deployments.deploy_to_pool", "--pool", "dataplatform-ops-ecs",
         "--job-variable", "image=123456789012.dkr.ecr.eu-west-1.amazonaws.com/dataplatform-ops:1.0",
         "--job-variable", "cluster=data-ops"],
        cwd=ROOT, env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()},
        capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with get_client(sync_client=True) as client:
        for spec in deployment_specs():
            deployment = client.read_deployment_by_name(f"{load_flow(spec['entrypoint']).name}/{spec['name']}")
            assert deployment.work_pool_name == "dataplatform-ops-ecs"
            assert deployment.job_variables == {
                "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/dataplatform-ops:1.0", "cluster": "data-ops"}
            assert deployment.parameters == (spec.get("parameters") or {})
