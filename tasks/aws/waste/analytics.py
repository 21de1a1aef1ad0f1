"""Waste listers for EMR, Kinesis and SageMaker, and the stop of a notebook left running.
CloudWatch series come from one GetMetricData per 500 queries per region."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from botocore.exceptions import ClientError

from rules.config import opted_out
from rules.waste import EMR_METRIC_MINUTES, Resource, WastePolicy
from tasks.aws.actions import Outcome
from tasks.aws.clients import Account, paginate
from tasks.aws.cloudwatch import MetricQuery, get_metric_data
from tasks.aws.ec2 import tag_dict
from tasks.aws.permissions import requires
from tasks.aws.waste.scan import Scan

FIVE_MINUTES = 300


@requires("elasticmapreduce:ListClusters", "elasticmapreduce:DescribeCluster", "elasticmapreduce:ListInstanceGroups",
          "elasticmapreduce:ListInstanceFleets", "cloudwatch:GetMetricData")
def list_emr_clusters(scan: Scan) -> list[Resource]:
    """Waiting and running clusters, their running instances by type, and IsIdle over `emr_idle_minutes`."""
    emr = scan.client("emr")
    clusters = list(paginate(emr, "list_clusters", "Clusters", ClusterStates=["WAITING", "RUNNING"]))
    if not clusters:
        return []
    end = scan.now.replace(second=0, microsecond=0)
    queries = [MetricQuery(f"c{i}", "AWS/ElasticMapReduce", "IsIdle", {"JobFlowId": c["Id"]}, "Minimum",
                           EMR_METRIC_MINUTES * 60) for i, c in enumerate(clusters)]
    data = get_metric_data(scan.client("cloudwatch"), queries, end - timedelta(minutes=scan.policy.emr_idle_minutes),
                           end)
    resources = []
    for i, c in enumerate(clusters):
        instances: Counter = Counter()
        for g in paginate(emr, "list_instance_groups", "InstanceGroups", ClusterId=c["Id"]):
            instances[g["InstanceType"]] += g.get("RunningInstanceCount", 0)
        if not instances:  # an instance-fleet cluster
            for fleet in paginate(emr, "list_instance_fleets", "InstanceFleets", ClusterId=c["Id"]):
                for spec in fleet.get("InstanceTypeSpecifications", [])[:1]:
                    instances[spec["InstanceType"]] += (fleet.get("ProvisionedOnDemandCapacity", 0)
                                                        + fleet.get("ProvisionedSpotCapacity", 0))
        described = emr.describe_cluster(ClusterId=c["Id"])["Cluster"]
        resources.append(Resource(
            id=c["Id"], region=scan.region, arn=c.get("ClusterArn", ""), tags=tag_dict(described.get("Tags")),
            created=c.get("Status", {}).get("Timeline", {}).get("CreationDateTime"),
            facts={"name": c.get("Name", ""), "state": c["Status"]["State"], "instances": dict(instances),
                   "is_idle": data.values(f"c{i}")}))
    return resources


@requires("kinesis:ListStreams", "kinesis:DescribeStreamSummary", "kinesis:ListTagsForStream",
          "cloudwatch:GetMetricData")
def list_streams(scan: Scan) -> list[Resource]:
    """Streams with their mode and open shards, and their busiest five minutes over `kinesis_lookback_days`."""
    kinesis = scan.client("kinesis")
    streams = []
    for summary in paginate(kinesis, "list_streams", "StreamSummaries"):
        streams.append(kinesis.describe_stream_summary(StreamName=summary["StreamName"])["StreamDescriptionSummary"])
    if not streams:
        return []
    queries = [MetricQuery(f"s{i}_{key}", "AWS/Kinesis", metric, {"StreamName": s["StreamName"]}, "Sum", FIVE_MINUTES)
               for i, s in enumerate(streams) for key, metric in (("b", "IncomingBytes"), ("r", "IncomingRecords"))]
    end = scan.now.replace(second=0, microsecond=0)
    data = get_metric_data(scan.client("cloudwatch"), queries,
                           end - timedelta(days=scan.policy.kinesis_lookback_days), end)
    resources = []
    for i, s in enumerate(streams):
        tags = kinesis.list_tags_for_stream(StreamName=s["StreamName"]).get("Tags", [])
        resources.append(Resource(
            id=s["StreamARN"], region=scan.region, arn=s["StreamARN"], tags=tag_dict(tags),
            created=s.get("StreamCreationTimestamp"),
            facts={"name": s["StreamName"], "status": s.get("StreamStatus", ""),
                   "mode": s.get("StreamModeDetails", {}).get("StreamMode", "PROVISIONED"),
                   "shards": s.get("OpenShardCount", 0),
                   "peak_bytes_per_second": max(data.values(f"s{i}_b"), default=0) / FIVE_MINUTES,
                   "peak_records_per_second": max(data.values(f"s{i}_r"), default=0) / FIVE_MINUTES}))
    return resources


@requires("sagemaker:ListNotebookInstances", "sagemaker:ListTags")
def list_notebooks(scan: Scan) -> list[Resource]:
    """Notebook instances in service, with when they last started or changed."""
    sagemaker = scan.client("sagemaker")
    resources = []
    for nb in paginate(sagemaker, "list_notebook_instances", "NotebookInstances", StatusEquals="InService"):
        tags = sagemaker.list_tags(ResourceArn=nb["NotebookInstanceArn"]).get("Tags", [])
        since = nb.get("LastModifiedTime")
        resources.append(Resource(
            id=nb["NotebookInstanceArn"], region=scan.region, arn=nb["NotebookInstanceArn"], tags=tag_dict(tags),
            created=nb.get("CreationTime"),
            facts={"name": nb["NotebookInstanceName"], "status": nb["NotebookInstanceStatus"],
                   "instance_type": nb.get("InstanceType", ""), "since": since.isoformat() if since else None}))
    return resources


@requires("sagemaker:DescribeNotebookInstance", "sagemaker:ListTags", "sagemaker:StopNotebookInstance", write=True)
def stop_notebook(account: Account, region: str, resource: Resource, policy: WastePolicy) -> Outcome:
    """Stop a notebook instance (its storage volume stays; it can be started again). Re-reads it first."""
    sagemaker = account.client("sagemaker", region)
    try:
        nb = sagemaker.describe_notebook_instance(NotebookInstanceName=resource.facts["name"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("ValidationException", "ResourceNotFound"):
            return Outcome("done", "notebook already gone")
        raise
    if nb["NotebookInstanceStatus"] != "InService":
        return Outcome("done", f"already {nb['NotebookInstanceStatus']}")
    if opted_out(tag_dict(sagemaker.list_tags(ResourceArn=nb["NotebookInstanceArn"]).get("Tags")), policy.opt_out_tag):
        return Outcome("skipped", f"tagged {policy.opt_out_tag}")
    sagemaker.stop_notebook_instance(NotebookInstanceName=resource.facts["name"])
    return Outcome("done", "stopped")
