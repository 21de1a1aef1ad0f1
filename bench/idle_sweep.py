"""Benchmark: the idle-resources sweep vs Cloud Custodian on the same moto account.

    uv sync --frozen --group bench
    uv run python bench/idle_sweep.py [--volumes 10000 --eips 2000 --snapshots 1000]

Seeds one region of a moto server on 127.0.0.1 (every tenth volume attached to an instance,
so not idle; half the snapshots of live volumes, half orphaned), then runs, each in its own fresh process so peak memory is comparable:

- ours: the `idle-resources` flow (report only) against a Prefect server;
- custodian: `c7n` policies for unattached volumes and unused Elastic IPs (the issue's target);
- custodian+snap: the same plus a policy for orphaned snapshots, so both cover the same scope.

Prints wall time (the sweep itself, imports excluded), peak RSS, AWS API calls, findings and
Prefect task runs, and the ratio of the two wall times. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"


def _count_api_calls() -> dict[str, int]:
    """Count every AWS API call made in this process (both tools use botocore)."""
    import botocore.client

    calls = {"n": 0}
    original = botocore.client.BaseClient._make_api_call

    def counted(self, operation_name, api_params):
        calls["n"] += 1
        return original(self, operation_name, api_params)

    botocore.client.BaseClient._make_api_call = counted
    return calls


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours() -> dict:
    calls = _count_api_calls()
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect_aws import AwsCredentials

    from blocks.store import OpsStore
    from flows.idle_resources import idle_resources
    from rules.idle import IdlePolicy

    suffix = uuid.uuid4().hex[:6]
    AwsCredentials(region_name=REGION).save(f"bench-aws-{suffix}")
    OpsStore(url=f"sqlite:///{tempfile.mkdtemp()}/store.db").save(f"bench-store-{suffix}")
    baseline = _peak_rss_mb()
    calls["n"] = 0
    profile = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        start = time.perf_counter()
        if profile:
            profile.enable()
        state = idle_resources(policy=IdlePolicy(refresh_prices=False, volume_min_age_days=0, snapshot_min_age_days=1),
                               regions=[REGION], aws_credentials=f"bench-aws-{suffix}",
                               store=f"bench-store-{suffix}", return_state=True,
                               now=datetime.now(timezone.utc) + timedelta(days=2))  # snapshots old enough
        wall = time.perf_counter() - start
    if profile:  # the flow's own thread: where the run waits and what it spends time on
        profile.disable()
        pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
    summary = state.result()
    with get_client(sync_client=True) as client:
        task_runs = len(client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))))
    return {"tool": "ours", "wall_s": wall, "peak_rss_mb": _peak_rss_mb(), "rss_before_mb": baseline,
            "api_calls": calls["n"], "findings": len(summary.findings),
            "monthly_usd": summary.monthly_usd, "task_runs": task_runs}


POLICIES = """
policies:
  - name: unattached-volumes
    resource: aws.ebs
    filters:
      - State: available
  - name: unused-eips
    resource: aws.network-addr
    filters:
      - AssociationId: absent
"""

# What ours also judges: snapshots whose volume is gone and that no AMI uses.
SNAPSHOT_POLICY = """
  - name: orphaned-snapshots
    resource: aws.ebs-snapshot
    filters:
      - skip-ami-snapshots
      - type: volume
        key: VolumeId
        value: absent
"""


def run_custodian(same_scope: bool = False) -> dict:
    calls = _count_api_calls()
    from c7n.config import Config
    from c7n.policy import load as load_policies
    from c7n.resources import load_resources

    out = tempfile.mkdtemp()
    path = Path(out, "policies.yml")
    path.write_text(POLICIES + (SNAPSHOT_POLICY if same_scope else ""))
    load_resources(("aws.ebs", "aws.network-addr", "aws.ebs-snapshot"))
    config = Config.empty(region=REGION, regions=[REGION], output_dir=out, cache="", account_id="123456789012")
    baseline = _peak_rss_mb()
    calls["n"] = 0
    start = time.perf_counter()
    found = {p.name: len(p.run()) for p in load_policies(config, str(path))}
    wall = time.perf_counter() - start
    return {"tool": "custodian+snap" if same_scope else "custodian", "wall_s": wall, "peak_rss_mb": _peak_rss_mb(), "rss_before_mb": baseline,
            "api_calls": calls["n"], "findings": sum(found.values()), "by_policy": found}


def seed(endpoint: str, volumes: int, eips: int, snapshots: int) -> dict:
    """Fill the moto server's backend directly (same process): seconds instead of minutes."""
    import boto3
    from moto.ec2.models import ec2_backends

    zone = f"{REGION}a"
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint)
    image = ec2.register_image(Name="bench", RootDeviceName="/dev/sda1", BlockDeviceMappings=[
        {"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}}])["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, Placement={"AvailabilityZone": zone},
                                 )["Instances"][0]["InstanceId"]
    backend = ec2_backends["123456789012"][REGION]
    created = []
    for i in range(volumes):
        vol = backend.create_volume(size=10 + i % 90, zone_name=zone, volume_type="gp3")
        if i % 10 == 0:  # every tenth volume is attached: not idle
            backend.attach_volume(vol.id, instance, f"/dev/xvd{i}")
        created.append(vol.id)
    for i in range(snapshots):
        if i % 2:
            backend.create_snapshot(created[i % len(created)], "bench")
        else:  # every other snapshot outlived its volume: orphaned
            gone = backend.create_volume(size=20, zone_name=zone, volume_type="gp3")
            backend.create_snapshot(gone.id, "bench")
            backend.delete_volume(gone.id)
    for _ in range(eips):
        backend.allocate_address(domain="vpc")
    return {"volumes": volumes, "eips": eips, "snapshots": snapshots}


def _child(tool: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--run", tool], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=False)
    if os.environ.get("BENCH_PROFILE"):
        print(out.stderr[-12000:])
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"{tool} failed:\n{out.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--volumes", type=int, default=10_000)
    parser.add_argument("--eips", type=int, default=2_000)
    parser.add_argument("--snapshots", type=int, default=1_000)
    parser.add_argument("--run", choices=["ours", "custodian", "custodian+snap"])
    args = parser.parse_args()
    if args.run:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(run_ours() if args.run == "ours" else run_custodian(args.run == "custodian+snap")))
        return

    os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"  # no network here; it only adds noise
    from moto.server import ThreadedMotoServer
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request skews both
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    start = time.perf_counter()
    endpoint = f"http://{host}:{port}"
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"})
    inventory = seed(endpoint, args.volumes, args.eips, args.snapshots)
    print(f"seeded {inventory} in {time.perf_counter() - start:.1f} s")
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": REGION, "DO_NOT_TRACK": "1"}
    with prefect_test_harness(server_startup_timeout=600):
        env["PREFECT_API_URL"] = PREFECT_API_URL.value()
        ours = _child("ours", env)
    custodian = _child("custodian", env)
    same_scope = _child("custodian+snap", env)
    server.stop()

    for r in (ours, custodian, same_scope):
        print(f"{r['tool']:>10}: wall {r['wall_s']:7.2f} s | peak RSS {r['peak_rss_mb']:6.0f} MB "
              f"(before sweep {r['rss_before_mb']:.0f} MB) | API calls {r['api_calls']:5d} | "
              f"findings {r['findings']:6d}" + (f" | Prefect task runs {r['task_runs']}" if "task_runs" in r else ""))
    print(f"ours also judged snapshots and priced every finding: ${ours['monthly_usd']:,.2f}/month")
    print(f"wall-time ratio ours/custodian = {ours['wall_s'] / custodian['wall_s']:.2f} "
          "(custodian: the issue's two policies, unattached volumes and unused EIPs)")
    print(f"wall-time ratio ours/custodian+snap = {ours['wall_s'] / same_scope['wall_s']:.2f} "
          "(custodian+snap: plus orphaned snapshots, the same scope as ours)")


if __name__ == "__main__":
    main()
