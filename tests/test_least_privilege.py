"""Least privilege, proven with moto's IAM enforcement, for every job that calls AWS.

The tests themselves are in tests/least_privilege.py and run in each job's own test module,
against the scenario it declares there (`@scenario_for`). Here: every AWS job declares one.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from deployments.iam import flow_actions
from flows.registry import JOBS
from tasks.aws.permissions import permissions_of

# Reaches AWS only through a warehouse block with IAM auth, the same `WarehouseConnection` code
# that query-watch's scenario proves; its own runs need two databases and a pipelines file.
NOT_RUN_HERE = {"data-integrity"}


def test_every_aws_job_declares_a_least_privilege_scenario():
    declared = set()
    for path in Path(__file__).parent.rglob("test_*.py"):
        declared |= set(re.findall(r'@scenario_for\("([^"]+)"\)', path.read_text()))
    calls_aws = {name for name, fl in JOBS.items() if flow_actions(sys.modules[fl.fn.__module__])}
    assert calls_aws - NOT_RUN_HERE <= declared, "declare one with @scenario_for in the job's test module"
    assert declared <= set(JOBS)
    assert len(declared) >= 9


def test_permissions_follow_calls_into_helpers_a_flow_never_imports():
    from tasks.aws.actions import apply_plan

    # apply_plan declares no action itself: each action it dispatches to (through `_act`) does.
    assert permissions_of([apply_plan]) == {
        "ec2:DescribeAddresses", "ec2:ReleaseAddress", "ec2:DescribeVolumes", "ec2:DescribeSnapshots",
        "ec2:CreateSnapshot", "ec2:CreateTags", "ec2:DeleteVolume", "ec2:DeleteSnapshot",
        "s3:PutLifecycleConfiguration", "s3:GetLifecycleConfiguration"}
    assert permissions_of([apply_plan], include_write=False) == set()
