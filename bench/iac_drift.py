"""Benchmark: iac-drift over many large states against a large account (moto server on 127.0.0.1).

    uv run python bench/iac_drift.py [--states 50 --resources 2000 --live 20000] [--scales 0.5,1]

Seeds two regions: `--live` resources (a quarter EBS volumes, a tenth security groups, the
rest SQS queues; 90% of them managed), and `--states` Terraform states (format version 4, as Terraform
1.x writes them) of `--resources` resource instances each: the managed ones, 10 per state that
are gone (missing), 1% of volumes resized by hand (drifted), and the rest of other types with
realistic attributes (DNS records, alarms, policy attachments), so the bytes are those of real
states. Then runs the `iac-drift` flow (report only) in a fresh process per scale and prints
wall time, peak RSS, AWS API calls, state bytes and findings. With several `--scales` it shows
how the work grows: with pages and state bytes, not with resources x states.
Not a test: nothing is asserted.
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
from datetime import datetime, timezone
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
REGIONS = ["us-east-1", "us-west-2"]
ACCOUNT = "123456789012"
BUCKET = "bench-tfstate"


def _count_api_calls() -> dict[str, int]:
    import botocore.client

    calls: dict = {"n": 0, "seconds": {}}
    original = botocore.client.BaseClient._make_api_call

    def counted(self, operation_name, api_params):
        calls["n"] += 1
        start = time.perf_counter()
        try:
            return original(self, operation_name, api_params)
        finally:
            took = calls["seconds"]
            took[operation_name] = took.get(operation_name, 0.0) + time.perf_counter() - start

    botocore.client.BaseClient._make_api_call = counted
    return calls


def _memory_mb(field: str) -> float:
    """VmHWM (peak) or VmRSS (now) of this process. Not getrusage's ru_maxrss: Linux carries that
    over from the parent through fork and exec, and the parent here holds the seeded moto."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def run_flow() -> dict:
    calls = _count_api_calls()
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect_aws import AwsCredentials

    from blocks.store import OpsStore
    from flows.iac_drift import iac_drift
    from rules.iac_drift import DriftPolicy

    suffix = uuid.uuid4().hex[:6]
    AwsCredentials(region_name=REGION).save(f"bench-aws-{suffix}")
    OpsStore(url=f"sqlite:///{tempfile.mkdtemp()}/store.db").save(f"bench-store-{suffix}")
    baseline = _memory_mb("VmRSS")
    calls["n"] = 0
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        start = time.perf_counter()
        state = iac_drift(policy=DriftPolicy(discover_states=False, ignore=[f"aws_s3_bucket/{BUCKET}"]),
                          backends=[{"bucket": BUCKET, "prefix": "states/"}], regions=REGIONS,
                          aws_credentials=f"bench-aws-{suffix}", store=f"bench-store-{suffix}",
                          return_state=True, now=datetime.now(timezone.utc))
        wall = time.perf_counter() - start
    result = state.result()
    with get_client(sync_client=True) as client:
        task_runs = len(client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))))
    kinds: dict[str, int] = {}
    for f in result.findings:
        kinds[f.kind] = kinds.get(f.kind, 0) + 1
    return {"wall_s": wall, "peak_rss_mb": _memory_mb("VmHWM"), "rss_before_mb": baseline, "api_calls": calls["n"],
            "api_seconds": dict(sorted(calls["seconds"].items(), key=lambda kv: -kv[1])[:6]), "findings": kinds, "task_runs": task_runs, "monthly_usd": result.monthly_usd, "errors": result.errors}


def _other(n: int, state: int) -> dict:
    """A resource of a type drift does not compare, with the attributes such a resource has."""
    from tests.iac_fixtures import tf_instance, tf_resource

    kind = n % 3
    if kind == 0:
        attrs = {"allow_overwrite": None, "alias": [], "fqdn": f"svc{n}.s{state}.internal.example.com",
                 "health_check_id": "", "id": f"Z0{state:04d}_svc{n}.s{state}.internal.example.com_A",
                 "multivalue_answer_routing_policy": False, "name": f"svc{n}.s{state}.internal.example.com",
                 "records": [f"10.{state % 250}.{n // 250 % 250}.{n % 250}"], "set_identifier": "", "ttl": 300,
                 "type": "A", "zone_id": f"Z0{state:04d}"}
        return tf_resource("aws_route53_record", f"svc{n}", [tf_instance(attrs, schema_version=2)])
    if kind == 1:
        attrs = {"actions_enabled": True, "alarm_actions": [f"arn:aws:sns:{REGION}:{ACCOUNT}:alerts"],
                 "alarm_description": f"queue {n} backlog", "alarm_name": f"s{state}-backlog-{n}",
                 "arn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:s{state}-backlog-{n}",
                 "comparison_operator": "GreaterThanThreshold", "datapoints_to_alarm": 0,
                 "dimensions": {"QueueName": f"s{state}-q{n}"}, "evaluation_periods": 3,
                 "id": f"s{state}-backlog-{n}", "metric_name": "ApproximateAgeOfOldestMessage",
                 "namespace": "AWS/SQS", "period": 60, "statistic": "Maximum", "tags": {}, "tags_all": {},
                 "threshold": 900, "treat_missing_data": "missing"}
        return tf_resource("aws_cloudwatch_metric_alarm", f"backlog{n}", [tf_instance(attrs, schema_version=1)])
    attrs = {"id": f"role-{state}-{n}-20260101000000000000000001",
             "policy_arn": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
             "role": f"s{state}-fn{n}-role"}
    return tf_resource("aws_iam_role_policy_attachment", f"basic{n}", [tf_instance(attrs)])


def seed(endpoint: str, states: int, per_state: int, live: int) -> dict:
    """Fill the moto backends directly (same process), then upload the states through S3.

    Two regions, each with half the live resources: moto answers an EC2 describe call in one
    page whatever its size (real EC2 pages), and one page of 10,000 volumes takes it longer
    than the client's read timeout on a busy machine."""
    import boto3
    from moto.ec2.models import ec2_backends
    from moto.sqs.models import sqs_backends

    from tests.iac_fixtures import (
        aws_ebs_volume,
        aws_security_group,
        aws_sqs_queue,
        sg_rule,
        tf_instance,
        tf_resource,
        tf_state,
    )

    managed: dict[str, dict[str, list[str]]] = {}
    for region in REGIONS:
        ec2, sqs = ec2_backends[ACCOUNT][region], sqs_backends[ACCOUNT][region]
        share = live // len(REGIONS)
        volumes, groups = share // 4, share // 10
        queues = share - volumes - groups
        vol_ids = [ec2.create_volume(size=20, zone_name=f"{region}a", volume_type="gp3").id for _ in range(volumes)]
        sg_ids = [ec2.create_security_group(f"bench-{i}", "bench", force=True).id for i in range(groups)]
        names = [f"bench-{region}-q{i}" for i in range(queues)]
        for name in names:
            sqs.create_queue(name)
        # 90% managed, spread over the region's states.
        managed[region] = {"vol": vol_ids[: volumes * 9 // 10], "sg": sg_ids[: groups * 9 // 10],
                           "q": names[: queues * 9 // 10]}
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint)
    s3.create_bucket(Bucket=BUCKET)
    total_bytes = 0
    for s in range(states):
        region = REGIONS[s % len(REGIONS)]
        in_region = len(range(s % len(REGIONS), states, len(REGIONS)))  # the region's states share its resources
        mine = {k: v[s // len(REGIONS)::in_region] for k, v in managed[region].items()}
        resources = [
            # 1% of the managed volumes were resized by hand: the state still says 10 GiB.
            tf_resource("aws_ebs_volume", "data", [
                tf_instance(aws_ebs_volume(v, 10 if (s + i) % 100 == 0 else 20, "gp3", region), index_key=i)
                for i, v in enumerate(mine["vol"])]),
            tf_resource("aws_security_group", "svc", [
                tf_instance(aws_security_group(g, f"bench-{g}", region, [], "vpc-bench"), index_key=f"g{i}")
                for i, g in enumerate(mine["sg"])], module=f'module.svc["{s}"]', each="map"),
            tf_resource("aws_sqs_queue", "work", [  # and 10 queues per state are gone
                tf_instance(aws_sqs_queue(q, region), index_key=i)
                for i, q in enumerate(mine["q"] + [f"bench-gone-{s}-{n}" for n in range(10)])]),
        ]
        used = sum(len(r["instances"]) for r in resources)
        resources += [_other(n, s) for n in range(max(0, per_state - used))]
        if s == 0 and resources[1]["instances"]:  # one inline ingress rule list, as most groups have
            resources[1]["instances"][0]["attributes"]["ingress"] = [sg_rule("tcp", 443, 443, ["10.0.0.0/8"])]
        body = tf_state(resources, serial=s + 1)
        total_bytes += len(body)
        s3.put_object(Bucket=BUCKET, Key=f"states/stack-{s:03d}/terraform.tfstate", Body=body)
    # moto's server imports a service's models on its first request (CloudFormation imports them
    # all, ~10 s): pay that here, not in the measured run.
    for service, call in (("cloudformation", "list_stacks"), ("iam", "list_roles"), ("lambda", "list_functions"),
                          ("rds", "describe_db_instances"), ("redshift", "describe_clusters"),
                          ("dynamodb", "list_tables"), ("resourcegroupstaggingapi", "get_resources"),
                          ("sts", "get_caller_identity")):
        getattr(boto3.client(service, region_name=REGION, endpoint_url=endpoint), call)()
    return {"live": live // len(REGIONS) * len(REGIONS), "states": states, "resources_per_state": per_state,
            "state_mib": round(total_bytes / 1024**2, 1)}


def _child(env: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--run"], env=env, cwd=ROOT, capture_output=True, text=True,
                         check=False)
    if os.environ.get("BENCH_VERBOSE"):  # the run's own log: which task took how long
        print("\n".join(line for line in out.stderr.splitlines() if "Finished in state" in line or "Beginning" in line))
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"iac-drift failed:\n{out.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--states", type=int, default=50)
    parser.add_argument("--resources", type=int, default=2_000)
    parser.add_argument("--live", type=int, default=20_000)
    parser.add_argument("--scales", default="1", help="comma-separated multipliers of states and live resources")
    parser.add_argument("--run", action="store_true")
    args = parser.parse_args()
    if args.run:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(run_flow()))
        return

    sys.path.insert(0, str(ROOT))
    os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": REGION})
    from moto.server import ThreadedMotoServer
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    results = []
    with prefect_test_harness(server_startup_timeout=600):
        for scale in (float(s) for s in args.scales.split(",")):
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
            server.start()
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            start = time.perf_counter()
            seeded = seed(endpoint, round(args.states * scale), args.resources, round(args.live * scale))
            print(f"scale {scale}: seeded {seeded} in {time.perf_counter() - start:.1f} s", flush=True)
            env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "DO_NOT_TRACK": "1",
                   "PREFECT_API_URL": PREFECT_API_URL.value()}
            results.append((scale, seeded, _child(env)))
            httpx.post(f"{endpoint}/moto-api/reset")  # a fresh account for the next scale
            server.stop()
    for scale, seeded, r in results:
        print(f"scale {scale:>4}: {seeded['states']} states x {seeded['resources_per_state']} resources "
              f"({seeded['state_mib']} MiB) vs {seeded['live']} live | wall {r['wall_s']:6.1f} s | peak RSS "
              f"{r['peak_rss_mb']:6.0f} MB (before {r['rss_before_mb']:.0f}) | API calls {r['api_calls']} | "
              f"task runs {r['task_runs']} | findings {r['findings']} | ${r['monthly_usd']:,.2f}/month"
              + (f" | not covered: {r['errors']}" if r["errors"] else ""))
        print(f"           slowest AWS operations (s): {', '.join(f'{k} {v:.1f}' for k, v in r['api_seconds'].items())}")


if __name__ == "__main__":
    main()
