"""Graviton (arm64) equivalents of x86 instances, DB/cache classes and Lambda functions.

Which family maps to which is a judgement (same size, the current Graviton generation);
whether a type is x86 or arm64 and whether the target exists in the region are facts the
caller takes from `DescribeInstanceTypes` / `DescribeOrderableDBInstanceOptions`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydantic import Field

from rules.config import PricedPolicy
from rules.findings import Finding, Severity
from rules.pricing import HOURS_PER_MONTH, PriceTable, comparable

KIND = "graviton-candidate"

# x86 family -> Graviton family of the same shape (general purpose, compute, memory, burstable).
_FAMILIES = {
    **dict.fromkeys(("t2", "t3", "t3a"), "t4g"),
    **dict.fromkeys(("m4", "m5", "m5a", "m5n", "m5d", "m6i", "m6a", "m7i", "m7a"), "m7g"),
    **dict.fromkeys(("c4", "c5", "c5a", "c5n", "c5d", "c6i", "c6a", "c7i", "c7a"), "c7g"),
    **dict.fromkeys(("r4", "r5", "r5a", "r5n", "r5d", "r6i", "r6a", "r7i", "r7a"), "r7g"),
}
# RDS engines with Graviton classes (Oracle and SQL Server have none).
_RDS_ENGINES = ("postgres", "mysql", "mariadb", "aurora-postgresql", "aurora-mysql")
# ElastiCache minimum engine versions for Graviton nodes.
_CACHE_MIN_VERSION = {"redis": (5, 0, 6), "valkey": (7, 2, 0), "memcached": (1, 5, 16)}
# Lambda runtimes that have no arm64 build.
_LAMBDA_X86_ONLY = {"go1.x", "java8", "python3.7", "python3.6", "dotnetcore3.1", "nodejs10.x",
                    "ruby2.5", "nodejs12.x"}


class GravitonPolicy(PricedPolicy):
    repeat_interval_hours: float = Field(
        default=168, ge=1, description="Hours before a still-open finding is announced again (advice: weekly)."
    )
    min_monthly_saving_usd: float = Field(default=1.0, ge=0, description="Report only savings above this, per resource and month.")
    lookback_days: int = Field(default=14, ge=1, le=63, description="Days of Lambda Duration history used to estimate GB-seconds per month.")


def graviton_type(instance_type: str) -> str | None:
    """`m5.large` -> `m7g.large`; `db.r5.xlarge` -> `db.r7g.xlarge`; None when there is no match."""
    prefix = ""
    for p in ("db.", "cache."):
        if instance_type.startswith(p):
            prefix, instance_type = p, instance_type[len(p):]
    family, _, size = instance_type.partition(".")
    target = _FAMILIES.get(family)
    return f"{prefix}{target}.{size}" if target and size else None


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


@dataclass(frozen=True)
class Candidate:
    """One x86 resource, its Graviton target and how sure we are that it can move."""

    service: str  # ec2 | rds | elasticache | lambda
    resource_id: str
    region: str
    current: str
    target: str
    note: str
    current_monthly: float | None
    target_monthly: float | None


def _monthly(table: PriceTable, region: str, key: str, units: float = 1) -> tuple[float | None, bool]:
    try:
        p = table.get(region, key)
    except KeyError:
        return None, False
    return round(p.usd * units, 4), p.estimated


def _pair(table: PriceTable, region: str, current: str, target: str,
          units: float = 1) -> tuple[float | None, float | None, bool]:
    """Monthly current and target prices on one basis (see `comparable`), and whether estimated."""
    try:
        cur, tgt = comparable(table, region, current, target)
    except KeyError:
        (c, e1), (t, e2) = _monthly(table, region, current, units), _monthly(table, region, target, units)
        return c, t, e1 or e2
    return round(cur.usd * units, 4), round(tgt.usd * units, 4), cur.estimated or tgt.estimated


def _finding(c: Candidate, policy: GravitonPolicy, estimated: bool) -> Finding | None:
    if c.current_monthly is None or c.target_monthly is None:
        saving = None
        money = f"no bundled price for {c.current if c.current_monthly is None else c.target}"
    else:
        saving = round(c.current_monthly - c.target_monthly, 2)
        if saving < policy.min_monthly_saving_usd:
            return None
        money = f"${c.current_monthly:,.2f} -> ${c.target_monthly:,.2f}/month" + (" (estimated price)" if estimated else "")
    return Finding(
        kind=KIND, resource_id=c.resource_id, scope=f"{c.region}/{c.service}", severity=Severity.INFO,
        reason=f"{c.current} -> {c.target}: {money}. {c.note}",
        numbers={"service": c.service, "current": c.current, "target": c.target,
                 "current_monthly_usd": c.current_monthly, "target_monthly_usd": c.target_monthly,
                 "note": c.note},
        monthly_cost_usd=saving,
    )


def ec2_candidates(instances: Iterable, type_info: Mapping[str, Mapping], table: PriceTable,
                   policy: GravitonPolicy) -> list[Finding]:
    """Running x86 instances whose Graviton twin exists in the region (per DescribeInstanceTypes)."""
    found = []
    for i in instances:
        if i.state != "running" or "x86_64" not in type_info.get(i.instance_type, {}).get("architectures", []):
            continue
        target = graviton_type(i.instance_type)
        if not target or "arm64" not in type_info.get(target, {}).get("architectures", []):
            continue
        if (i.platform or "").lower() == "windows":
            continue  # Windows does not run on Graviton
        note = (f"Needs an arm64 build of AMI {i.image_id} (and arm64 builds of native code and containers)")
        if i.tags.get("aws:autoscaling:groupName"):
            note += f"; change the launch template of Auto Scaling group {i.tags['aws:autoscaling:groupName']}"
        cur, tgt, est = _pair(table, i.region, f"ec2:{i.instance_type}:hour", f"ec2:{target}:hour", HOURS_PER_MONTH)
        f = _finding(Candidate("ec2", i.instance_id, i.region, i.instance_type, target, note + ".", cur, tgt),
                     policy, est)
        if f:
            found.append(f)
    return found


def rds_candidates(dbs: Iterable, orderable: set[tuple[str, str, str]], table: PriceTable,
                   policy: GravitonPolicy) -> list[Finding]:
    """RDS instances on x86 classes; the note says whether the engine version offers the target."""
    found = []
    for d in dbs:
        target = graviton_type(d.db_class)
        if not target or d.engine not in _RDS_ENGINES or d.status not in ("available", "stopped"):
            continue
        if (d.engine, d.engine_version, target) in orderable:
            note = f"{target} is orderable for {d.engine} {d.engine_version} in {d.region}: a class change, with a restart"
        else:
            note = (f"{target} is not listed as orderable for {d.engine} {d.engine_version} in {d.region}: "
                    "upgrade the engine version first, then change the class")
        cur, tgt, est = _pair(table, d.region, f"rds:{d.db_class}:hour", f"rds:{target}:hour", HOURS_PER_MONTH)
        f = _finding(Candidate("rds", d.db_id, d.region, d.db_class, target, note + ".", cur, tgt), policy, est)
        if f:
            found.append(f)
    return found


def cache_candidates(clusters: Iterable, table: PriceTable, policy: GravitonPolicy) -> list[Finding]:
    found = []
    for c in clusters:
        target = graviton_type(c.node_type)
        if not target:
            continue
        minimum = _CACHE_MIN_VERSION.get(c.engine)
        if minimum is None:
            continue
        if not c.engine_version:
            note = f"engine version unknown: Graviton nodes need {c.engine} {'.'.join(map(str, minimum))} or later"
        elif _version(c.engine_version) >= minimum:
            note = f"{c.engine} {c.engine_version} supports Graviton nodes: an online node-type change"
        else:
            note = (f"{c.engine} {c.engine_version} is too old for Graviton nodes: upgrade to "
                    f"{'.'.join(map(str, minimum))} or later first")
        cur, tgt, est = _pair(table, c.region, f"elasticache:{c.node_type}:hour", f"elasticache:{target}:hour",
                              HOURS_PER_MONTH * c.nodes)
        f = _finding(Candidate("elasticache", c.cluster_id, c.region, c.node_type, target, note + ".", cur, tgt),
                     policy, est)
        if f:
            found.append(f)
    return found


def lambda_candidates(functions: Iterable, gb_seconds_month: Mapping[str, float], table: PriceTable,
                      policy: GravitonPolicy) -> list[Finding]:
    """x86_64 functions -> arm64, priced on their measured GB-seconds per month."""
    found = []
    for fn in functions:
        if fn.architecture != "x86_64" or fn.runtime in _LAMBDA_X86_ONLY:
            continue
        gbs = gb_seconds_month.get(fn.name, 0.0)
        if fn.package_type == "Image":
            note = "Container image: rebuild it for linux/arm64"
        else:
            note = f"Runtime {fn.runtime}: rebuild native dependencies and layers for arm64"
        cur, e1 = _monthly(table, fn.region, "lambda:x86_64:gb-second", gbs)
        tgt, e2 = _monthly(table, fn.region, "lambda:arm64:gb-second", gbs)
        note += f"; {gbs:,.0f} GB-s per month measured, request charges unchanged."
        f = _finding(Candidate("lambda", fn.name, fn.region, "x86_64", "arm64", note, cur, tgt), policy, e1 or e2)
        if f:
            found.append(f)
    return found
