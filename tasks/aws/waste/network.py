"""Waste listers for the network: NAT gateways with their traffic, load balancers with their targets."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from rules.waste import Resource
from tasks.aws.clients import paginate
from tasks.aws.cloudwatch import MetricQuery, get_metric_data
from tasks.aws.ec2 import tag_dict
from tasks.aws.permissions import requires
from tasks.aws.waste.scan import Scan

# Every byte through a NAT gateway leaves it on one of these two (to the destination or back).
NAT_METRICS = ("BytesOutToDestination", "BytesOutToSource")
DAY = 86_400
TAGS_PER_CALL = 20  # DescribeTags takes at most 20 load balancers


@requires("ec2:DescribeNatGateways", "cloudwatch:GetMetricData")
def list_nat_gateways(scan: Scan) -> list[Resource]:
    """Available NAT gateways with the bytes they moved over `nat_idle_days` (one GetMetricData per 250)."""
    gateways = [g for g in paginate(scan.client("ec2"), "describe_nat_gateways", "NatGateways")
                if g.get("State") == "available"]
    if not gateways:
        return []
    queries = [MetricQuery(id=f"n{i}_{j}", namespace="AWS/NATGateway", metric=metric,
                           dimensions={"NatGatewayId": g["NatGatewayId"]}, stat="Sum", period=DAY)
               for i, g in enumerate(gateways) for j, metric in enumerate(NAT_METRICS)]
    end = scan.now.replace(minute=0, second=0, microsecond=0)
    data = get_metric_data(scan.client("cloudwatch"), queries, end - timedelta(days=scan.policy.nat_idle_days), end)
    resources = []
    for i, g in enumerate(gateways):
        values = [v for j in range(len(NAT_METRICS)) for v in data.values(f"n{i}_{j}")]
        resources.append(Resource(
            id=g["NatGatewayId"], region=scan.region, tags=tag_dict(g.get("Tags")), created=g.get("CreateTime"),
            facts={"state": g["State"], "bytes": sum(values), "datapoints": len(values),
                   "vpc_id": g.get("VpcId", ""), "subnet_id": g.get("SubnetId", ""),
                   "connectivity": g.get("ConnectivityType", "public")}))
    return resources


_SHORT_TYPE = {"application": "app", "network": "net", "gateway": "gwy"}
# Classic instance health, in the words of target health.
_CLASSIC_STATE = {"InService": "healthy", "OutOfService": "unhealthy", "Unknown": "unavailable"}


@requires("elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeTargetGroups",
          "elasticloadbalancing:DescribeTargetHealth", "elasticloadbalancing:DescribeTags",
          "elasticloadbalancing:DescribeInstanceHealth")
def list_load_balancers(scan: Scan) -> list[Resource]:
    """ALBs, NLBs, GWLBs and Classic LBs with a count of their targets by health state."""
    return _current_generation(scan) + _classic(scan)


def _current_generation(scan: Scan) -> list[Resource]:
    elbv2 = scan.client("elbv2")
    lbs = list(paginate(elbv2, "describe_load_balancers", "LoadBalancers"))
    if not lbs:
        return []
    groups_of: dict[str, list[str]] = {}
    for tg in paginate(elbv2, "describe_target_groups", "TargetGroups"):
        for lb_arn in tg.get("LoadBalancerArns", []):
            groups_of.setdefault(lb_arn, []).append(tg["TargetGroupArn"])
    health: dict[str, Counter] = {}  # target group -> state counts; a group may serve several LBs
    for tg_arn in {tg for groups in groups_of.values() for tg in groups}:
        descriptions = elbv2.describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"]
        health[tg_arn] = Counter(d["TargetHealth"]["State"] for d in descriptions)
    tags: dict[str, dict[str, str]] = {}
    arns = [lb["LoadBalancerArn"] for lb in lbs]
    for i in range(0, len(arns), TAGS_PER_CALL):
        for d in elbv2.describe_tags(ResourceArns=arns[i:i + TAGS_PER_CALL])["TagDescriptions"]:
            tags[d["ResourceArn"]] = tag_dict(d.get("Tags"))
    resources = []
    for lb in lbs:
        arn, kind = lb["LoadBalancerArn"], lb.get("Type", "application")
        states: Counter = Counter()
        for tg_arn in groups_of.get(arn, []):
            states.update(health[tg_arn])
        resources.append(Resource(
            id=f"{_SHORT_TYPE.get(kind, kind)}/{lb['LoadBalancerName']}", region=scan.region, arn=arn,
            tags=tags.get(arn, {}), created=lb.get("CreatedTime"),
            facts={"type": kind, "state": lb.get("State", {}).get("Code", ""), "targets": dict(states),
                   "target_groups": len(groups_of.get(arn, [])), "dns_name": lb.get("DNSName", "")}))
    return resources


def _classic(scan: Scan) -> list[Resource]:
    elb = scan.client("elb")
    lbs = list(paginate(elb, "describe_load_balancers", "LoadBalancerDescriptions"))
    names = [lb["LoadBalancerName"] for lb in lbs]
    tags: dict[str, dict[str, str]] = {}
    for i in range(0, len(names), TAGS_PER_CALL):
        for d in elb.describe_tags(LoadBalancerNames=names[i:i + TAGS_PER_CALL])["TagDescriptions"]:
            tags[d["LoadBalancerName"]] = tag_dict(d.get("Tags"))
    resources = []
    for lb in lbs:
        name, states = lb["LoadBalancerName"], Counter()
        if lb.get("Instances"):
            for s in elb.describe_instance_health(LoadBalancerName=name)["InstanceStates"]:
                states[_CLASSIC_STATE.get(s["State"], s["State"])] += 1
        resources.append(Resource(
            id=f"classic/{name}", region=scan.region, tags=tags.get(name, {}), created=lb.get("CreatedTime"),
            facts={"type": "classic", "state": "active", "targets": dict(states), "target_groups": 0,
                   "dns_name": lb.get("DNSName", "")}))
    return resources
