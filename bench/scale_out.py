"""Benchmark: `idle-resources` and `lambda-health` over many accounts x regions vs `c7n-org`.

    uv sync --frozen --group bench
    uv run python bench/scale_out.py [--accounts 20 --regions 17 --latency-ms 80 --throttle 0.02]

A moto server (one account per role ARN: moto's STS AssumeRole answers with the role's account)
seeded with a few resources per account x region, behind a local proxy that holds every call
`--latency-ms` and answers a `--throttle` share of them with AWS's own throttling error for the
protocol (`RequestLimitExceeded`, `Throttling`, `ThrottlingException`, `TooManyRequestsException`,
`SlowDown`). Each tool runs in a fresh process, one after another:

- ours: each flow (report only, `role_arns` for every extra account) against a Prefect server
  on PostgreSQL;
- c7n-org: the same accounts and regions with comparable policies (bench/idle_sweep.py's
  unattached volumes and unused Elastic IPs; Lambda functions with Errors in the last day).

Prints wall time, the ideal (HTTP calls at the proxy x latency / the tool's concurrency), the
calls and throttled calls, Prefect task runs, peak RSS of the process tree, and the CPU seconds
the run cost (the tool, the Prefect server, moto and the proxy) with the floor they set: their
sum over this machine's cores. PostgreSQL's CPU is not counted.
Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections import Counter
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.idle_sweep import POLICIES as IDLE_POLICIES  # noqa: E402 - after the path is set

OWN_ACCOUNT = "123456789012"
HOME_REGION = "us-east-1"
LAMBDA_POLICIES = """
policies:
  - name: erroring-lambdas
    resource: aws.lambda
    filters:
      - type: metrics
        name: Errors
        days: 1
        value: 0
        op: greater-than
"""
JOBS = ("idle-resources", "lambda-health")


def role_arns(accounts: int) -> list[str]:
    return [f"arn:aws:iam::{100000000000 + i}:role/ops-reader" for i in range(1, accounts)]


def account_ids(accounts: int) -> list[str]:
    return [OWN_ACCOUNT, *(arn.split(":")[4] for arn in role_arns(accounts))]


# The 17 regions every account has enabled by default (no opt-in), us-east-1 first.
DEFAULT_REGIONS = ["us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "eu-central-1", "eu-west-1",
                   "eu-west-2", "eu-west-3", "eu-north-1", "ap-south-1", "ap-northeast-1", "ap-northeast-2",
                   "ap-northeast-3", "ap-southeast-1", "ap-southeast-2", "sa-east-1"]


# ---------------------------------------------------------------- the proxy

_SCOPE = re.compile(r"Credential=[^/]+/\d+/([^/]+)/([^/]+)/")


def _cbor_map(items: dict[str, str]) -> bytes:
    """A CBOR map of short text strings: CloudWatch's rpc-v2-cbor error body."""
    out = bytes([0xA0 + len(items)])
    for text in (t for kv in items.items() for t in kv):
        raw = text.encode()
        out += (bytes([0x60 + len(raw)]) if len(raw) < 24 else bytes([0x78, len(raw)])) + raw
    return out


def throttled_reply(service: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """AWS's throttling answer in the protocol of the call (what botocore retries on)."""
    if headers.get("smithy-protocol") == "rpc-v2-cbor":
        return 400, {"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor"}, _cbor_map(
            {"__type": "ThrottlingException", "message": "Rate exceeded"})
    if headers.get("x-amz-target"):
        return 400, {"Content-Type": "application/x-amz-json-1.1"}, json.dumps(
            {"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
    if service == "ec2":
        return 503, {"Content-Type": "text/xml"}, (
            b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>RequestLimitExceeded'
            b"</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>x</RequestID></Response>")
    if service == "lambda":
        return 429, {"Content-Type": "application/json", "x-amzn-ErrorType": "TooManyRequestsException"}, \
            json.dumps({"Type": "User", "message": "Rate exceeded"}).encode()
    if service == "s3":
        return 503, {"Content-Type": "application/xml"}, (
            b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>")
    return 400, {"Content-Type": "text/xml"}, (  # the query protocol: STS, IAM
        b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message>"
        b"</Error><RequestId>x</RequestId></ErrorResponse>")


class SlowProxy(BaseHTTPRequestHandler):
    """Forwards to moto after `latency` s; answers a `throttle` share with a throttling error."""

    protocol_version = "HTTP/1.1"  # keep-alive, as with AWS
    upstream = ""
    latency = 0.08
    throttle = 0.02
    stats: Counter = Counter()
    lock = threading.Lock()
    rng = random.Random(20)
    http = None

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        scope = _SCOPE.search(headers.get("authorization", ""))
        service = scope.group(2) if scope else "?"
        with self.lock:
            self.stats["calls"] += 1
            self.stats[f"calls:{service}"] += 1
            throttled = self.rng.random() < self.throttle
            if throttled:
                self.stats["throttled"] += 1
        time.sleep(self.latency)
        if throttled:
            status, reply_headers, content = throttled_reply(service, headers)
        else:
            reply = self.http.request(self.command, self.upstream + self.path, content=body,
                                      headers={k: v for k, v in headers.items() if k != "host"})
            status, content = reply.status_code, reply.content
            reply_headers = {k: v for k, v in reply.headers.items() if k.lower() not in (
                "content-length", "transfer-encoding", "connection", "content-encoding")}
        self.send_response(status)
        for key, value in reply_headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    def log_message(self, *args) -> None:
        pass


def start_proxy(upstream: str, latency: float, throttle: float) -> tuple[ThreadingHTTPServer, type[SlowProxy]]:
    import httpx

    handler = type("Handler", (SlowProxy,), {
        "upstream": upstream, "latency": latency, "throttle": throttle, "stats": Counter(),
        "http": httpx.Client(timeout=60, limits=httpx.Limits(max_connections=200, max_keepalive_connections=200))})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.request_queue_size = 256
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, handler


# ---------------------------------------------------------------- the seed

def seed(endpoint: str, accounts: list[str], regions: list[str], now: datetime) -> Counter:
    """Per account x region: 2 unattached volumes, 1 attached, 1 unused and 1 used EIP,
    an orphaned snapshot, 2 Lambda functions (one erroring in the last 15 minutes)."""
    import boto3
    from moto.ec2.models import ec2_backends

    seeded: Counter = Counter()
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    base = boto3.client("sts", region_name=HOME_REGION, endpoint_url=endpoint)
    for account in accounts:
        creds = {}
        if account != OWN_ACCOUNT:
            got = base.assume_role(RoleArn=f"arn:aws:iam::{account}:role/ops-reader", RoleSessionName="seed")
            creds = {"aws_access_key_id": got["Credentials"]["AccessKeyId"],
                     "aws_secret_access_key": got["Credentials"]["SecretAccessKey"],
                     "aws_session_token": got["Credentials"]["SessionToken"]}
        session = boto3.Session(**creds)
        role = session.client("iam", region_name=HOME_REGION, endpoint_url=endpoint).create_role(
            RoleName="lambda-exec", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
        )["Role"]["Arn"]
        for region in regions:
            ec2 = session.client("ec2", region_name=region, endpoint_url=endpoint)
            image = ec2.register_image(Name="bench", RootDeviceName="/dev/sda1", BlockDeviceMappings=[
                {"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}}])["ImageId"]
            zone = f"{region}a"
            instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, Placement={"AvailabilityZone": zone},
                                         )["Instances"][0]["InstanceId"]
            backend = ec2_backends[account][region]
            for i in range(3):
                vol = backend.create_volume(size=20 + i, zone_name=zone, volume_type="gp3")
                if i == 0:
                    backend.attach_volume(vol.id, instance, "/dev/xvdf")
            gone = backend.create_volume(size=30, zone_name=zone, volume_type="gp3")
            backend.create_snapshot(gone.id, "bench")
            backend.delete_volume(gone.id)
            backend.allocate_address(domain="vpc")
            used = backend.allocate_address(domain="vpc")
            backend.associate_address(instance=backend.get_instance(instance), allocation_id=used.allocation_id)
            lam = session.client("lambda", region_name=region, endpoint_url=endpoint)
            cloudwatch = session.client("cloudwatch", region_name=region, endpoint_url=endpoint)
            for name in ("orders-ingest", "payments-webhook"):
                lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="handler.handler",
                                    Code={"ZipFile": code.getvalue()}, Timeout=30, MemorySize=256)
            dims = [{"Name": "FunctionName", "Value": "payments-webhook"}]
            data = []
            for minutes in range(1, 15, 5):
                ts = now - timedelta(minutes=minutes)
                data += [{"MetricName": "Invocations", "Timestamp": ts, "Value": 200, "Unit": "Count", "Dimensions": dims},
                         {"MetricName": "Errors", "Timestamp": ts, "Value": 30, "Unit": "Count", "Dimensions": dims}]
            cloudwatch.put_metric_data(Namespace="AWS/Lambda", MetricData=data)
            seeded.update({"unattached volumes": 2, "unused EIPs": 1, "orphaned snapshots": 1, "functions": 2,
                           "erroring functions": 1})
    return seeded


# ---------------------------------------------------------------- the runs (child processes)

def run_ours(job: str, accounts: int, regions: list[str]) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect_aws import AwsCredentials

    from blocks.store import OpsStore
    from flows.idle_resources import idle_resources
    from flows.lambda_health import lambda_health
    from rules.idle import IdlePolicy

    suffix = uuid.uuid4().hex[:6]
    AwsCredentials(region_name=HOME_REGION).save(f"bench-aws-{suffix}")
    OpsStore(url=f"sqlite:///{tempfile.mkdtemp()}/store.db").save(f"bench-store-{suffix}")
    common = {"regions": regions, "role_arns": role_arns(accounts), "aws_credentials": f"bench-aws-{suffix}",
              "store": f"bench-store-{suffix}", "return_state": True}
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        start = time.perf_counter()
        if job == "idle-resources":
            state = idle_resources(policy=IdlePolicy(refresh_prices=False, volume_min_age_days=0,
                                                     snapshot_min_age_days=1),
                                   now=datetime.now(timezone.utc) + timedelta(days=2), **common)  # snapshots old enough
        else:
            state = lambda_health(**common)
        wall = time.perf_counter() - start
    summary = state.result()
    with get_client(sync_client=True) as client:
        flow_run = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        task_runs, offset = 0, 0
        while page := client.read_task_runs(flow_run_filter=flow_run, offset=offset, limit=200):
            task_runs += len(page)
            offset += len(page)
    return {"wall_s": wall, "findings": len(summary.findings),
            "gaps": len(summary.errors), "task_runs": task_runs, "state": state.type.value}


def run_c7n_org(job: str, accounts: int, regions: list[str]) -> dict:
    import yaml

    work = Path(tempfile.mkdtemp())
    (work / "policies.yml").write_text(IDLE_POLICIES if job == "idle-resources" else LAMBDA_POLICIES)
    config = {"accounts": [{"account_id": a, "name": f"acct-{a}", "regions": regions,
                            "role": f"arn:aws:iam::{a}:role/ops-reader"}  # c7n-org enters every account by a role
                           for a in account_ids(accounts)]}
    (work / "accounts.yml").write_text(yaml.safe_dump(config))
    (work / "cache").mkdir()
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "c7n_org.cli", "run", "-c", str(work / "accounts.yml"),
                          "-u", str(work / "policies.yml"), "-s", str(work / "out"),
                          "--cache-path", str(work / "cache")], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    counts = re.search(r"Policy resource counts Counter\((\{.*\})\)", out.stderr)
    found = json.loads(counts.group(1).replace("'", '"')) if counts else {}
    errors = [line for line in out.stderr.splitlines() if "Error" in line or "Exception" in line]
    return {"wall_s": wall, "findings": sum(found.values()), "by_policy": found, "exit": out.returncode,
            "errors": len(errors), "first_error": errors[0][-300:] if errors else ""}


# ---------------------------------------------------------------- the parent

def _tree(root: int) -> list[int]:
    """`root` and all its live descendants, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(int(entry))
            except (OSError, ValueError):
                continue
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += parents.get(pid, [])
    return found


def _tree_memory_mb(root: int) -> tuple[float, float]:
    """RSS and PSS of `root` and all its descendants, from /proc. PSS shares pages the processes
    have in common (c7n-org's forked workers) instead of counting them once per process."""
    rss = pss = 0
    for pid in _tree(root):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss / 1024, pss / 1024


def _tree_cpu_s(root: int) -> float:
    """User + system CPU seconds used so far by `root` and its live descendants."""
    ticks = 0
    for pid in _tree(root):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            ticks += sum(int(v) for v in stat[stat.rindex(")") + 2:].split()[11:13])
        except (OSError, ValueError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _child(tool: str, job: str, args: argparse.Namespace, env: dict) -> dict:
    process = subprocess.Popen([sys.executable, __file__, "--run", tool, "--job", job, "--accounts", str(args.accounts),
                                "--regions", str(args.regions)], env=env, cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = [0.0, 0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[:] = map(max, peak, _tree_memory_mb(process.pid))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    done.set()
    sampler.join()
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            return {"tool": tool, "job": job, "peak_rss_mb": peak[0], "peak_pss_mb": peak[1], **json.loads(line)}
    raise RuntimeError(f"{tool} {job} failed:\n{stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--regions", type=int, default=17, choices=range(1, len(DEFAULT_REGIONS) + 1))
    parser.add_argument("--latency-ms", type=float, default=80)
    parser.add_argument("--throttle", type=float, default=0.02, help="share of calls answered with throttling")
    parser.add_argument("--jobs", nargs="+", choices=JOBS, default=list(JOBS))
    parser.add_argument("--tools", nargs="+", choices=("ours", "c7n-org"), default=["ours", "c7n-org"])
    parser.add_argument("--run", choices=("ours", "c7n-org"))
    parser.add_argument("--job", choices=JOBS)
    args = parser.parse_args()
    regions = DEFAULT_REGIONS[:args.regions]
    if args.run:
        run = run_ours if args.run == "ours" else run_c7n_org
        print(json.dumps(run(args.job, args.accounts, regions)))
        return

    os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": HOME_REGION})
    from c7n_org.cli import WORKER_COUNT

    from deployments.demo import demo_databases, moto_server, prefect_server
    from deployments.local_postgres import to_url
    from tasks.limits import AWS_ACCOUNT_SLOTS
    from tasks.runner import MAX_CONCURRENT_TARGETS

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    results = []
    with ExitStack() as stack:
        moto = stack.enter_context(moto_server())
        server = None
        if "ours" in args.tools:
            db = stack.enter_context(demo_databases(["bench_prefect"]))["bench_prefect"]
            server = stack.enter_context(prefect_server(
                Path(tempfile.mkdtemp()), to_url(db).replace("postgresql://", "postgresql+asyncpg://")))
        start = time.perf_counter()
        seeded = seed(moto, account_ids(args.accounts), regions, datetime.now(timezone.utc))
        print(f"seeded {args.accounts} accounts x {len(regions)} regions in {time.perf_counter() - start:.0f} s: "
              f"{dict(seeded)}", flush=True)
        proxy, handler = start_proxy(moto, args.latency_ms / 1000, args.throttle)
        stack.callback(proxy.shutdown)
        env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.server_address[1]}", "DO_NOT_TRACK": "1",
               "PREFECT_LOGGING_LEVEL": "WARNING"}
        if server:
            server.wait_healthy()
            env["PREFECT_API_URL"] = server.api_url
        concurrency = {"ours": min(MAX_CONCURRENT_TARGETS, args.accounts * AWS_ACCOUNT_SLOTS), "c7n-org": WORKER_COUNT}
        for job in args.jobs:
            for tool in args.tools:
                handler.stats.clear()
                # CPU spent during the run: the tool's process tree (waited for), the Prefect
                # server's, and this process's (moto and the proxy are threads here).
                cpu = (_children_cpu_s(), _tree_cpu_s(server.process.pid) if server else 0.0, time.process_time())
                result = _child(tool, job, args, env)
                result.update(cpu_tool_s=_children_cpu_s() - cpu[0],
                              cpu_prefect_server_s=(_tree_cpu_s(server.process.pid) if server else 0.0) - cpu[1],
                              cpu_moto_proxy_s=time.process_time() - cpu[2])
                result.update(calls=handler.stats["calls"], throttled=handler.stats["throttled"],
                              by_service={k[6:]: v for k, v in handler.stats.items() if k.startswith("calls:")},
                              concurrency=concurrency[tool])
                result["ideal_s"] = result["calls"] * args.latency_ms / 1000 / result["concurrency"]
                # No run can be faster than its CPU work spread over every core of this machine.
                result["cpu_floor_s"] = (result["cpu_tool_s"] + result["cpu_prefect_server_s"]
                                         + result["cpu_moto_proxy_s"]) / (os.cpu_count() or 1)
                results.append(result)
                print(json.dumps(result), flush=True)

    print(f"\n{args.accounts} accounts x {len(regions)} regions, {args.latency_ms:.0f} ms a call, "
          f"{args.throttle:.0%} throttled; ideal = calls x latency / concurrency (ours: "
          f"min(MAX_CONCURRENT_TARGETS={MAX_CONCURRENT_TARGETS}, accounts x AWS_ACCOUNT_SLOTS={AWS_ACCOUNT_SLOTS}); "
          f"c7n-org: its {WORKER_COUNT} worker processes)")
    for r in results:
        print(f"{r['job']:>14} {r['tool']:>7}: wall {r['wall_s']:6.1f} s | ideal {r['ideal_s']:5.1f} s "
              f"({r['wall_s'] / max(r['ideal_s'], 1e-9):.2f}x, concurrency {r['concurrency']}) | calls {r['calls']:5d} "
              f"({r['throttled']} throttled) | findings {r['findings']:4d} | peak RSS {r['peak_rss_mb']:4.0f} MB (PSS {r['peak_pss_mb']:.0f})"
              + f" | CPU s: tool {r['cpu_tool_s']:.0f}, Prefect server {r['cpu_prefect_server_s']:.0f}, moto+proxy "
                f"{r['cpu_moto_proxy_s']:.0f} -> floor {r['cpu_floor_s']:.1f} s on {os.cpu_count()} cores"
              + (f" | task runs {r['task_runs']} | gaps {r['gaps']}" if "task_runs" in r else "")
              + (f" | exit {r['exit']}, {r['errors']} error lines" if "exit" in r else ""))
    for job in args.jobs:
        pair = {r["tool"]: r for r in results if r["job"] == job}
        if len(pair) == 2:
            print(f"{job}: ours/c7n-org wall = {pair['ours']['wall_s'] / pair['c7n-org']['wall_s']:.2f}")


if __name__ == "__main__":
    main()
