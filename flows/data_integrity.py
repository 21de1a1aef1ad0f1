"""data-integrity: did each pipeline's target receive what its source has, and is it fresh?

Sources and targets are PostgreSQL-family (WarehouseConnection), BigQuery (GcpCredentials) or
Snowflake (prefect-snowflake SnowflakeConnector) tables, in any combination.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml
from google.cloud import bigquery
from prefect import flow
from prefect_gcp import GcpCredentials
from pydantic import BaseModel, ConfigDict, Field

from blocks.loading import load_block
from blocks.pipelines import IntegrityPipelines
from blocks.store import OpsStore, load_store
from blocks.warehouse import WarehouseConnection
from rules.config import ConfigError
from rules.integrity import (
    JOB,
    Measured,
    Pipeline,
    TableQuery,
    coverage_of,
    judge_pipeline,
    parse_pipelines,
    plan_queries,
    recent_counts,
)
from tasks.measure import measure_bigquery_tables, measure_postgres_tables, measure_snowflake_tables
from tasks.notify import on_flow_failure
from tasks.snowflake import snowflake_accounts
from tasks.tell import tell

REPO = Path(__file__).resolve().parent.parent


class IntegrityPolicy(BaseModel):
    """How the checks run; what to check and its thresholds live in the pipelines file."""

    model_config = ConfigDict(extra="forbid")

    max_concurrency_per_connection: int = Field(
        default=4, ge=1, le=64,
        description="Tables measured at once through one connection (database sessions).",
    )
    repeat_interval_hours: int = Field(
        default=24, ge=1, description="Remind about a still-open finding after this many hours."
    )


DEFAULT_POLICY = IntegrityPolicy()


def read_pipelines(pipelines_file: str | None, pipelines_block: IntegrityPipelines | str | None) -> list[Pipeline]:
    """The declared pipelines from a file in this repository and/or a block, validated."""
    if not pipelines_file and not pipelines_block:
        raise ConfigError("pipelines_file / pipelines_block: give at least one of them.")
    pipelines: list[Pipeline] = []
    if pipelines_file:
        path = (REPO / pipelines_file).resolve()
        if not path.is_relative_to(REPO):  # filters are SQL: they come only from reviewed files
            raise ConfigError(
                f"pipelines_file: {pipelines_file!r} is outside the repository; give a path "
                "inside it, e.g. `config/pipelines.yaml`."
            )
        if not path.is_file():
            raise ConfigError(f"pipelines_file: {pipelines_file!r} does not exist in the repository.")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"pipelines_file: {pipelines_file!r} is not valid YAML: {exc}") from None
        pipelines += parse_pipelines(data, pipelines_file)
    if pipelines_block:
        block = load_block(IntegrityPipelines, pipelines_block, "pipelines_block")
        pipelines += parse_pipelines(block.pipelines, f"block {pipelines_block!r}")
    names = [p.name for p in pipelines]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"pipelines {twice}, field `name`: declared in both the file and the "
                          "block; rename or remove one.")
    return pipelines


def load_connections(
    pipelines: Sequence[Pipeline], endpoints: dict[str, str] | None = None
) -> dict[tuple[str, str], Any]:
    """Every block the pipelines name, loaded once: (engine, name) -> block (for Snowflake, the
    checked account with its endpoint)."""
    blocks: dict[tuple[str, str], Any] = {}
    snowflake = {s.connection for p in pipelines for s in (p.source, p.target) if s and s.engine == "snowflake"}
    unknown = sorted(set(endpoints or {}) - snowflake)
    if unknown:
        raise ConfigError(f"`endpoints` names {unknown}, which no pipeline uses as a Snowflake connection.")
    for p in pipelines:
        for role, side in (("source", p.source), ("target", p.target)):
            if side is None or (side.engine, side.connection) in blocks:
                continue
            parameter = f"pipelines[{p.name}].{role}.connection"
            if side.engine == "snowflake":
                [blocks[("snowflake", side.connection)]] = snowflake_accounts(
                    [side.connection], {k: v for k, v in (endpoints or {}).items() if k == side.connection},
                    parameter)
                continue
            kind = WarehouseConnection if side.engine == "postgres" else GcpCredentials
            blocks[(side.engine, side.connection)] = load_block(kind, side.connection, parameter)
    return blocks


def bigquery_client(credentials: GcpCredentials, queries: Sequence[TableQuery]) -> bigquery.Client:
    """A client billed to the credentials' project, else the first table's project."""
    return credentials.get_bigquery_client(
        project=credentials.project or queries[0].side.table_parts[0])


def measure_all(
    connections: dict[tuple[str, str], Any], queries: Sequence[TableQuery], bound: int
) -> dict[str, Measured]:
    """One task run per connection, all connections at the same time."""
    by_connection: dict[tuple[str, str], list[TableQuery]] = defaultdict(list)
    for q in queries:
        by_connection[(q.side.engine, q.side.connection)].append(q)
    futures = []
    for (engine, name), group in by_connection.items():
        block = connections[(engine, name)]
        if engine == "postgres":
            futures.append(measure_postgres_tables.submit(block, group, bound))
        elif engine == "snowflake":
            futures.append(measure_snowflake_tables.submit(block, group, bound))
        else:
            futures.append(measure_bigquery_tables.submit(bigquery_client(block, group), group, bound))
    measured: dict[str, Measured] = {}
    for future in futures:
        measured.update(future.result())
    return measured


@flow(name=JOB, on_failure=[on_flow_failure])
def data_integrity(
    pipelines_file: str | None = "config/pipelines.yaml",
    pipelines_block: IntegrityPipelines | str | None = None,
    policy: IntegrityPolicy = DEFAULT_POLICY,
    endpoints: dict[str, str] | None = None,
    store: OpsStore | str = "ops-store",
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Reconcile source and target of every declared pipeline; returns the report rows.

    Args:
        pipelines_file: YAML file in this repository declaring the pipelines.
        pipelines_block: name of an `IntegrityPipelines` block with more pipelines.
        policy: concurrency and reminder interval.
        endpoints: Per Snowflake connector block name, a URL for that account instead of its public host (PrivateLink; `fakesnow://host:port` in tests and the demo).
        store: `OpsStore` block for findings and count history.
        now: Replay only: judge as if it were this time (tests, re-running a past window); leave empty.
    """
    ops_store = load_store(store)
    pipelines = read_pipelines(pipelines_file, pipelines_block)
    connections = load_connections(pipelines, endpoints)
    now = now or datetime.now(timezone.utc)

    measured = measure_all(connections, plan_queries(pipelines, now),
                           policy.max_concurrency_per_connection)

    verdicts = [
        judge_pipeline(
            p,
            {role: measured[f"{p.name}:{role}"] for role in ("source", "target")
             if f"{p.name}:{role}" in measured},
            recent_counts(ops_store.metric_history(JOB, "target_rows", p.name), now),
            now,
        )
        for p in pipelines
    ]
    findings = [f for v in verdicts for f in v.findings]

    ops_store.record_metrics(JOB, [m for v in verdicts for m in v.metrics])
    tell(JOB, findings, ops_store, now, coverage_of(pipelines, verdicts),
         repeat_interval=timedelta(hours=policy.repeat_interval_hours), table=[v.row for v in verdicts])
    return [v.row for v in verdicts]
