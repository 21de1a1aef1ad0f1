"""waste-checks' EMR, Kinesis and SageMaker checks on moto, and the stop of a notebook a person approves.

The checks run ten days after the resources are created (`NOW`). moto gaps bridged here: EMR and
Kinesis publish no CloudWatch metrics in moto, so IsIdle and the streams' incoming traffic are
planted with PutMetricData; everything else goes through the API.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import boto3
import pytest
from freezegun import freeze_time

from flows.waste_checks import JOB, waste_checks
from rules.waste import WastePolicy
from tests.approvals import run_and_answer
from tests.waste.test_waste_flow import KEEP, creds  # noqa: F401 - a fixture

REGION = "us-east-1"
NOW = datetime.now(timezone.utc).replace(second=0, microsecond=0) + timedelta(days=10)
KINDS = ["idle-emr-cluster", "kinesis-idle-shards", "sagemaker-notebook-left-running"]
MIB = 1024**2
ROLE = "arn:aws:iam::123456789012:role/notebooks"


def _put(namespace: str, metric: str, dims: dict, points: list[tuple[datetime, float]]) -> None:
    boto3.client("cloudwatch", region_name=REGION).put_metric_data(Namespace=namespace, MetricData=[
        {"MetricName": metric, "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
         "Timestamp": ts, "Value": value} for ts, value in points])


def plant_analytics() -> dict[str, str]:
    """-> names of the planted waste by kind."""
    emr = boto3.client("emr", region_name=REGION)

    def cluster(name: str) -> str:
        return emr.run_job_flow(Name=name, ReleaseLabel="emr-7.1.0", JobFlowRole="EMR_EC2_DefaultRole",
                                ServiceRole="EMR_DefaultRole", Instances={"KeepJobFlowAliveWhenNoSteps": True,
                                "InstanceGroups": [
                                    {"Name": "master", "InstanceRole": "MASTER", "InstanceType": "m5.xlarge",
                                     "InstanceCount": 1},
                                    {"Name": "core", "InstanceRole": "CORE", "InstanceType": "m5.xlarge",
                                     "InstanceCount": 2}]})["JobFlowId"]

    idle, busy = cluster("nightly-etl"), cluster("streaming-etl")
    cluster("just-started")  # no IsIdle datapoints yet: nothing to say
    every_5_min = [NOW - timedelta(minutes=m) for m in range(0, 35, 5)]
    _put("AWS/ElasticMapReduce", "IsIdle", {"JobFlowId": idle}, [(ts, 1) for ts in every_5_min])
    _put("AWS/ElasticMapReduce", "IsIdle", {"JobFlowId": busy},
         [(ts, 0 if i == 3 else 1) for i, ts in enumerate(every_5_min)])

    kinesis = boto3.client("kinesis", region_name=REGION)
    kinesis.create_stream(StreamName="clicks", ShardCount=4)
    kinesis.create_stream(StreamName="orders", ShardCount=2)
    kinesis.create_stream(StreamName="kept-clicks", ShardCount=4)
    kinesis.add_tags_to_stream(StreamName="kept-clicks", Tags={KEEP["Key"]: "yes"})
    kinesis.create_stream(StreamName="audit", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    peak = NOW - timedelta(days=1)
    # clicks: 150,000 records (500/s) and 150 MiB (0.5 MiB/s) in its busiest 5 min: one shard does.
    _put("AWS/Kinesis", "IncomingRecords", {"StreamName": "clicks"}, [(peak, 150_000)])
    _put("AWS/Kinesis", "IncomingBytes", {"StreamName": "clicks"}, [(peak, 150 * MIB)])
    # orders: 1,500 records/s at its peak: two shards are needed.
    _put("AWS/Kinesis", "IncomingRecords", {"StreamName": "orders"}, [(peak, 450_000)])

    sagemaker = boto3.client("sagemaker", region_name=REGION)
    for name, tags in (("exploration", []), ("kept-notebook", [KEEP]), ("paused", [])):
        sagemaker.create_notebook_instance(NotebookInstanceName=name, InstanceType="ml.t3.medium", RoleArn=ROLE,
                                           **({"Tags": tags} if tags else {}))
    sagemaker.stop_notebook_instance(NotebookInstanceName="paused")
    with freeze_time(NOW - timedelta(hours=2)):
        sagemaker.create_notebook_instance(NotebookInstanceName="morning", InstanceType="ml.t3.medium", RoleArn=ROLE)
    return {"idle-emr-cluster": idle, "kinesis-idle-shards": "clicks", "sagemaker-notebook-left-running": "exploration"}


def test_emr_kinesis_and_sagemaker_checks(creds, store):  # noqa: F811
    planted = plant_analytics()
    result = waste_checks(policy=WastePolicy(checks=KINDS), regions=[REGION], aws_credentials=creds,
                          store=store._block_document_name, now=NOW)
    assert result.errors == {}
    found = {f.kind: f for f in result.findings}
    assert {k: f.numbers.get("name") if k != "idle-emr-cluster" else f.resource_id for k, f in found.items()} == planted
    assert len(result.findings) == 3
    # EMR: 3 x m5.xlarge x $0.192 x 730 (the EC2 part; the EMR fee is on top) = $420.48.
    assert found["idle-emr-cluster"].monthly_cost_usd == pytest.approx(420.48)
    assert found["idle-emr-cluster"].reason == ("EMR cluster 'nightly-etl' idle (IsIdle) for the last 30 min; "
                                                "3 x m5.xlarge")
    # Kinesis: 4 shards, one needed: 3 x $0.015 x 730 = $32.85.
    assert found["kinesis-idle-shards"].monthly_cost_usd == pytest.approx(32.85)
    assert found["kinesis-idle-shards"].reason.startswith("4 shards; the busiest 5 min of 7 days needed 1 (500 records/s")
    # SageMaker: ml.t3.medium $0.05 x 730 = $36.50.
    assert found["sagemaker-notebook-left-running"].monthly_cost_usd == pytest.approx(36.5)
    assert [o.action for o in result.offers] == ["stop-notebook-instance"]


def _status(name: str) -> str:
    return boto3.client("sagemaker", region_name=REGION).describe_notebook_instance(
        NotebookInstanceName=name)["NotebookInstanceStatus"]


def test_an_approved_notebook_is_stopped_and_a_second_apply_changes_nothing(creds, store):  # noqa: F811
    plant_analytics()
    arn = f"arn:aws:sagemaker:{REGION}:123456789012:notebook-instance/exploration"
    params = dict(policy=WastePolicy(checks=["sagemaker-notebook-left-running"]), regions=[REGION],
                  aws_credentials=creds, store=store._block_document_name, apply=True, now=NOW)
    state = run_and_answer(waste_checks, {"approved": [arn]}, **params)
    assert state.is_completed(), state.message
    assert {n: _status(n) for n in ("exploration", "kept-notebook", "morning")} == {
        "exploration": "Stopped", "kept-notebook": "InService", "morning": "InService"}
    assert [(a["resource_id"], a["outcome"], a["detail"]) for a in store.actions_of(JOB)] == [(arn, "done", "stopped")]
    # Nothing is left to offer: the run completes without pausing.
    state = run_and_answer(waste_checks, {"approved": []}, must_pause=False, **params)
    assert state.is_completed() and state.result().offers == []
