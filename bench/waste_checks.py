"""Benchmark: every waste check over one seeded region, the job vs plain boto3 making the same calls.

    uv run python bench/waste_checks.py [--scale 1000]

Seeds one region of a moto server on 127.0.0.1 with `scale` log groups and volumes and a share
of that of every other resource the checks read (instances, snapshots, AMIs, NAT gateways, load
balancers, buckets with uploads and versions, RDS snapshots, ECR repositories, DynamoDB tables,
secrets, EMR clusters, Kinesis streams, notebooks, reservations and Savings Plans: moto lacks those
three listings, answered here by `deployments/local_reservations.py`), then runs, each in its own fresh
process:

- ours: the `waste-checks` flow (report only) against a Prefect server;
- plain: the same listers called directly (`scan_region`), no Prefect, no runner, no store.

Prints wall time, AWS API calls, findings and Prefect task runs. Run it at two scales to see API
calls grow with pages (not with task runs) and task runs stay at accounts x regions (+ the
account's bucket listing). Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
ACCOUNT = "123456789012"
# Every check runs; young resources would be skipped, so the run happens 120 days on.
LATER = timedelta(days=120)


def _count_api_calls() -> dict[str, int]:
    import botocore.client

    calls = {"n": 0}
    original = botocore.client.BaseClient._make_api_call

    def counted(self, operation_name, api_params):
        calls["n"] += 1
        return original(self, operation_name, api_params)

    botocore.client.BaseClient._make_api_call = counted
    return calls


def run_ours(now: datetime) -> dict:
    calls = _count_api_calls()
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect_aws import AwsCredentials

    from blocks.store import OpsStore
    from flows.waste_checks import waste_checks
    from rules.waste import WastePolicy

    suffix = uuid.uuid4().hex[:6]
    AwsCredentials(region_name=REGION).save(f"bench-aws-{suffix}")
    OpsStore(url=f"sqlite:///{tempfile.mkdtemp()}/store.db").save(f"bench-store-{suffix}")
    calls["n"] = 0
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        start = time.perf_counter()
        state = waste_checks(policy=WastePolicy(min_monthly_usd=0, refresh_prices=False), regions=[REGION],
                             aws_credentials=f"bench-aws-{suffix}", store=f"bench-store-{suffix}", now=now,
                             return_state=True)
        wall = time.perf_counter() - start
    result = state.result()
    with get_client(sync_client=True) as client:
        task_runs = len(client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))))
    return {"tool": "ours", "wall_s": wall, "api_calls": calls["n"], "findings": len(result.findings),
            "monthly_usd": result.monthly_usd, "task_runs": task_runs, "errors": result.errors}


def run_plain(now: datetime) -> dict:
    calls = _count_api_calls()
    from prefect_aws import AwsCredentials

    from rules.pricing import BUNDLED
    from rules.waste import RULES, WastePolicy, judge_rule
    from tasks.aws.clients import Account
    from tasks.aws.s3 import list_buckets
    from tasks.aws.waste import Scan, scan_region

    policy = WastePolicy(min_monthly_usd=0)
    account = Account(AwsCredentials(region_name=REGION))
    calls["n"] = 0
    start = time.perf_counter()
    buckets = [b for b in list_buckets.fn(account) if b.region == REGION]
    read = scan_region(Scan(account, REGION, policy, now, buckets))
    findings = [f for kind, resources in read.resources.items()
                for f in judge_rule(RULES[kind], resources, f"{ACCOUNT}/{REGION}", policy, BUNDLED, now)]
    wall = time.perf_counter() - start
    return {"tool": "plain", "wall_s": wall, "api_calls": calls["n"], "findings": len(findings),
            "monthly_usd": round(sum(f.monthly_cost_usd or 0 for f in findings), 2), "errors": read.gaps}


def seed(endpoint: str, scale: int, planted) -> dict:
    """Big counts straight into moto's backends (same process), the rest through the API."""
    import boto3
    from moto.ec2.models import ec2_backends
    from moto.logs.models import logs_backends

    from deployments.local_reservations import reserved_db_instance, reserved_node, savings_plan

    def client(service: str):
        return boto3.client(service, region_name=REGION, endpoint_url=endpoint)

    zone, tenth = f"{REGION}a", max(1, scale // 10)
    ec2 = client("ec2")
    ec2_backend = ec2_backends[ACCOUNT][REGION]
    image = ec2.register_image(Name="bench", RootDeviceName="/dev/sda1")["ImageId"]
    instances = [i["InstanceId"] for i in ec2.run_instances(ImageId=image, MinCount=tenth, MaxCount=tenth,
                                                            InstanceType="t2.medium")["Instances"]]
    ec2.stop_instances(InstanceIds=instances[: tenth // 2])
    volumes = []
    for i in range(scale):
        vol = ec2_backend.create_volume(size=10 + i % 90, zone_name=zone, volume_type="io1" if i % 7 == 0 else "gp3",
                                        iops=3000 if i % 7 == 0 else None)
        volumes.append(vol.id)
        if i % 2 == 0:
            ec2_backend.create_snapshot(vol.id, "bench")
    for i in range(tenth):
        ec2.create_image(InstanceId=instances[i % len(instances)], Name=f"bench-{i}")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{az}")["Subnet"]
               ["SubnetId"] for i, az in enumerate("ab")]
    for _ in range(tenth):
        ec2.create_nat_gateway(SubnetId=subnets[0])
    elbv2 = client("elbv2")
    for i in range(tenth):
        elbv2.create_load_balancer(Name=f"bench-{i}", Subnets=subnets)
    logs_backend = logs_backends[ACCOUNT][REGION]
    for i in range(scale):
        logs_backend.create_log_group(f"/bench/{i}", tags={})
    s3 = client("s3")
    for i in range(max(1, scale // 50)):
        s3.create_bucket(Bucket=f"bench-{i}")
        upload = s3.create_multipart_upload(Bucket=f"bench-{i}", Key="part")["UploadId"]
        s3.upload_part(Bucket=f"bench-{i}", Key="part", UploadId=upload, PartNumber=1, Body=b"x" * 1024)
    rds = client("rds")
    for i in range(max(1, scale // 50)):
        rds.create_db_instance(DBInstanceIdentifier=f"db-{i}", DBInstanceClass="db.t3.micro", Engine="postgres",
                               AllocatedStorage=20, MasterUsername="admin", MasterUserPassword="password1")
        rds.create_db_snapshot(DBSnapshotIdentifier=f"db-{i}-manual", DBInstanceIdentifier=f"db-{i}")
    ecr, ddb, sm = client("ecr"), client("dynamodb"), client("secretsmanager")
    kinesis, sagemaker, emr = client("kinesis"), client("sagemaker"), client("emr")
    for i in range(tenth):
        ecr.create_repository(repositoryName=f"bench-{i}")
        ddb.create_table(TableName=f"bench-{i}", KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                         ProvisionedThroughput={"ReadCapacityUnits": 100, "WriteCapacityUnits": 100})
        sm.create_secret(Name=f"bench/{i}", SecretString="x")
        kinesis.create_stream(StreamName=f"bench-{i}", ShardCount=2)
    for i in range(max(1, scale // 100)):
        sagemaker.create_notebook_instance(NotebookInstanceName=f"bench-{i}", InstanceType="ml.t3.medium",
                                           RoleArn=f"arn:aws:iam::{ACCOUNT}:role/nb")
        emr.run_job_flow(Name=f"bench-{i}", ReleaseLabel="emr-7.1.0", JobFlowRole="r", ServiceRole="s",
                         Instances={"KeepJobFlowAliveWhenNoSteps": True, "MasterInstanceType": "m5.xlarge",
                                    "SlaveInstanceType": "m5.xlarge", "InstanceCount": 3})
    # Reservations: one in ten ends within the 30 days.
    now = datetime.now(timezone.utc) + LATER
    planted.reserved_nodes[REGION] = [reserved_node(now, f"rs-{i}", 10 if i % 10 == 0 else 200) for i in range(tenth)]
    planted.reserved_db_instances[REGION] = [reserved_db_instance(now, f"ri-{i}", 10 if i % 10 == 0 else 200)
                                             for i in range(tenth)]
    planted.savings_plans[:] = [savings_plan(now, f"sp-{i}", 10 if i % 10 == 0 else 200) for i in range(tenth)]
    return {"log groups": scale, "volumes": scale, "snapshots": scale // 2, "instances": tenth,
            "AMIs": tenth, "NAT gateways": tenth, "load balancers": tenth, "tables/repos/secrets/streams/reservations": tenth}


def _child(tool: str, env: dict, now: datetime) -> dict:
    out = subprocess.run([sys.executable, __file__, "--run", tool, "--now", now.isoformat()], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=False)
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"{tool} failed:\n{out.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=1000)
    parser.add_argument("--run", choices=["ours", "plain"])
    parser.add_argument("--now")
    args = parser.parse_args()
    if args.run:
        sys.path.insert(0, str(ROOT))
        now = datetime.fromisoformat(args.now)
        print(json.dumps(run_ours(now) if args.run == "ours" else run_plain(now), default=str))
        return

    os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    from moto.server import ThreadedMotoServer
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    sys.path.insert(0, str(ROOT))
    from deployments.local_reservations import reservations_answered

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"})
    with reservations_answered() as planted:
        start = time.perf_counter()
        inventory = seed(endpoint, args.scale, planted)
        print(f"seeded {inventory} in {time.perf_counter() - start:.1f} s")
        now = datetime.now(timezone.utc) + LATER
        env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": REGION, "DO_NOT_TRACK": "1"}
        plain = _child("plain", env, now)
        with prefect_test_harness(server_startup_timeout=600):
            env["PREFECT_API_URL"] = PREFECT_API_URL.value()
            ours = _child("ours", env, now)
    server.stop()
    for r in (ours, plain):
        print(f"{r['tool']:>6}: wall {r['wall_s']:7.2f} s | API calls {r['api_calls']:6d} | findings "
              f"{r['findings']:6d} | ${r['monthly_usd']:,.2f}/month"
              + (f" | Prefect task runs {r['task_runs']}" if "task_runs" in r else "")
              + (f" | not covered: {r['errors']}" if r["errors"] else ""))
    print(f"wall-time ratio ours/plain = {ours['wall_s'] / plain['wall_s']:.2f}; API calls ours - plain = "
          f"{ours['api_calls'] - plain['api_calls']} (finding the account and its regions)")


if __name__ == "__main__":
    main()
