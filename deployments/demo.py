"""`make demo`: every job of the collection, once, against local stand-ins; then a summary.

    uv run python -m deployments.demo               # what `make demo` runs
    uv run python -m deployments.demo --keep-running  # leave the Prefect UI up until Ctrl-C

Starts, and stops again on exit (Ctrl-C and SIGTERM too): a Prefect server on SQLite in a
temporary directory, a moto server on 127.0.0.1 seeded with a messy AWS account
(`deployments/demo_seed.py`), PostgreSQL (`deployments/local_postgres.py`), the BigQuery
emulator, a fakesnow server for Snowflake (`deployments/local_snowflake.py`), and a Google Chat receiver that prints every message. Then it saves the blocks
the jobs load, applies the automations, runs each flow listed in `prefect.yaml` once with
the parameters in `DEMO_JOBS`, and prints findings and $/month per job, the messages
delivered and the Prefect UI address. Nothing here reaches a real cloud: AWS credentials
are fake and every AWS endpoint is the moto server.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from deployments.demo_seed import BQ_JOBS_TABLE, BQ_PROJECTS, REGIONS, SNOWFLAKE_ACCOUNT
from flows.registry import contracts, deployment_specs, load_flow

# Block names the demo creates; the jobs' defaults (`aws`, `ops-store`) already point at them.
AWS_BLOCK = "aws"
STORE_BLOCK = "ops-store"
CHAT_BLOCK = "ops-chat"
WAREHOUSE_BLOCK = "demo-warehouse"  # a PostgreSQL warehouse with a long query and a lock wait
APP_DB_BLOCK = "demo-app-db"  # a pipeline's source ...
ANALYTICS_DB_BLOCK = "demo-analytics-db"  # ... and its target, which misses a day and is stale
PIPELINES_BLOCK = "demo-pipelines"  # the pipeline between them, for data-integrity
REDSHIFT_BLOCK = "demo-redshift"  # cluster `analytics`: CloudWatch in moto, system views in PostgreSQL
SNOWFLAKE_BLOCK = "snowflake"  # a SnowflakeConnector for the fakesnow account (prefect.yaml's default)

# Services beyond AWS (moto), the store and chat that a job may need.
POSTGRES = "postgres"
BIGQUERY = "bigquery"
SNOWFLAKE = "snowflake"


@dataclass
class DemoEnv:
    """What the demo started, for the jobs' parameters."""

    home: Path
    postgres: dict[str, str] = field(default_factory=dict)  # demo database -> conninfo
    bigquery_endpoint: str | None = None
    snowflake_endpoint: str | None = None
    # The one time everything is seeded at and every job runs at (`now`), so windows, ages and
    # metric periods, and so the findings, are the same on every run of the demo.
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def available(self) -> set[str]:
        return {name for name, up in ((POSTGRES, self.postgres), (BIGQUERY, self.bigquery_endpoint),
                                      (SNOWFLAKE, self.snowflake_endpoint)) if up}


@dataclass(frozen=True)
class DemoCredentials:
    """The made-up secrets the demo's blocks hold (moto and the chat receiver accept any)."""

    aws_access_key_id: str = "testing"
    aws_secret_access_key: str = "testing"
    chat_key: str = "local-key"
    chat_token: str = "local-token"


@dataclass(frozen=True)
class DemoJob:
    """How the demo runs one job: parameters on top of prefect.yaml's (or a function of the
    `DemoEnv` giving them), and the services it needs beyond AWS, the store and chat."""

    parameters: Mapping[str, Any] | Callable[[DemoEnv], Mapping[str, Any]] = field(default_factory=dict)
    needs: frozenset[str] = frozenset()

    def parameters_for(self, env: DemoEnv) -> dict[str, Any]:
        return dict(self.parameters(env) if callable(self.parameters) else self.parameters)


def _bigquery(env: DemoEnv) -> dict[str, Any]:
    return {"projects": list(BQ_PROJECTS), "regions": ["us"], "emulator_endpoint": env.bigquery_endpoint,
            "jobs_table": BQ_JOBS_TABLE}


def _snowflake(**extra: Any) -> Callable[[DemoEnv], dict[str, Any]]:
    def parameters(env: DemoEnv) -> dict[str, Any]:
        return {"accounts": [SNOWFLAKE_BLOCK], "endpoints": {SNOWFLAKE_BLOCK: env.snowflake_endpoint}, **extra}
    return parameters


# How each job runs in the demo, keyed by flow name: parameters on top of its prefect.yaml entry
# (all jobs report only: `apply` stays False). Every AWS job on the runner sweeps the seeded
# regions with no entry here; a job that needs more (a warehouse, an emulator) gets an entry.
# A flow in prefect.yaml with no entry is skipped with a note.
# moto has no Pricing API: the jobs that refresh prices from it use the bundled table.
BUNDLED_PRICES = {"refresh_prices": False}
DEMO_JOBS: dict[str, DemoJob] = {
    **{name: DemoJob({"regions": list(REGIONS), **({"policy": BUNDLED_PRICES} if job.prices else {})})
       for name, job in contracts().items()},
    "idle-resources": DemoJob({"regions": list(REGIONS), "policy": {
        "s3_age_rules": [{"bucket": "*", "max_age_days": 365}], **BUNDLED_PRICES}}),
    # PostgreSQL: the trouble on the warehouse is seconds old, so the thresholds are seconds too;
    # live sessions are judged at the real time (`now: None`), not the demo's pinned one
    "query-watch": DemoJob({"warehouse": WAREHOUSE_BLOCK, "now": None, "policy": {
        "long_query_warn_minutes": 0.1, "lock_wait_warn_minutes": 0.05}}, needs=frozenset({POSTGRES})),
    "redshift-health": DemoJob({"warehouse": REDSHIFT_BLOCK}, needs=frozenset({POSTGRES})),
    # BigQuery (the emulator, with seeded job history) and data integrity (PostgreSQL)
    "bigquery-cost-report": DemoJob(_bigquery, needs=frozenset({BIGQUERY})),
    "bigquery-query-cost-watch": DemoJob(_bigquery, needs=frozenset({BIGQUERY})),
    "data-integrity": DemoJob({"pipelines_file": None, "pipelines_block": PIPELINES_BLOCK},
                              needs=frozenset({POSTGRES})),
    # Snowflake: a fakesnow account with yesterday's ACCOUNT_USAGE seeded at the pinned time
    "snowflake-cost-report": DemoJob(_snowflake(), needs=frozenset({SNOWFLAKE})),
    "snowflake-query-cost-watch": DemoJob(  # the seeded day lies within 48 h of `now`
        _snowflake(policy={"threshold_usd": 5, "lookback_hours": 48}), needs=frozenset({SNOWFLAKE})),
    "snowflake-query-watch": DemoJob(_snowflake(), needs=frozenset({SNOWFLAKE})),
    "snowflake-warehouse-hygiene": DemoJob(_snowflake(), needs=frozenset({SNOWFLAKE})),
    "snowflake-rbac-hygiene": DemoJob(_snowflake(policy={"accountadmin_users": ["ADMIN"]}),
                                      needs=frozenset({SNOWFLAKE})),
}

JOB_TIMEOUT_SECONDS = 150
# PostgreSQL databases the demo creates: a warehouse to watch, a pipeline's two ends, and a
# stand-in for a Redshift cluster's system views.
DEMO_DATABASES = ("warehouse", "app", "analytics", "redshift")


@dataclass
class JobResult:
    job: str
    status: str  # a Prefect state name (Completed, Failed, ...) or "skipped"
    seconds: float = 0.0
    findings: int = 0
    monthly_usd: float = 0.0
    note: str = ""


@dataclass
class DemoSummary:
    results: list[JobResult]
    notes: list[str]
    planted: str
    messages: list[Any]
    ui_url: str
    blocks: list[str]
    automations: list[str]
    server_pid: int
    seconds: float = 0.0

    def render(self) -> str:
        width = max([len(r.job) for r in self.results] + [10])
        lines = ["", "dataplatform-ops demo: summary", "",
                 f"{'job':<{width}}  {'result':<10} {'findings':>8} {'$/month':>12}  time"]
        for r in self.results:
            if r.status == "skipped":
                lines.append(f"{r.job:<{width}}  skipped: {r.note}")
                continue
            money = f"{r.monthly_usd:,.2f}" if r.monthly_usd else "-"
            lines.append(f"{r.job:<{width}}  {r.status:<10} {r.findings:>8} {money:>12}  {r.seconds:.0f}s"
                         + (f"  ({r.note})" if r.note else ""))
        ran = [r for r in self.results if r.status != "skipped"]
        lines.append(f"{'total':<{width}}  {'':<10} {sum(r.findings for r in ran):>8} "
                     f"{sum(r.monthly_usd for r in ran):>12,.2f}")
        lines += [""] + [f"note: {n}" for n in self.notes]
        lines += [
            f"Planted in the seeded AWS account: {self.planted}.",
            "Every job ran report-only (apply=False): nothing in the seeded account was changed.",
            f"Google Chat messages delivered: {len(self.messages)} (printed above as they arrived).",
            f"Prefect UI: {self.ui_url} (flow runs, artifacts, automations, blocks).",
            f"Demo wall time: {self.seconds:.0f}s.",
        ]
        return "\n".join(lines)


# --- services -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Set (or with None, remove) environment variables; restore them afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class PrefectServer:
    process: subprocess.Popen
    home: Path
    api_url: str
    ui_url: str

    def wait_healthy(self, timeout: float = 240) -> None:
        """Block until the API answers (a fresh SQLite database is migrated first)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                log = (self.home / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the Prefect server exited during start-up:\n{log}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Prefect server did not answer within {timeout:.0f}s")
            time.sleep(0.5)


@contextmanager
def prefect_server(
    home: Path, database_url: str | None = None, scheduler: bool = False, **settings: str
) -> Iterator[PrefectServer]:
    """`prefect server start` on a free port, in its own process group: on SQLite under `home`
    unless `database_url` names another database (`postgresql+asyncpg://...`); its scheduler
    only if asked; `settings` are more PREFECT_* variables for it.

    Yields as soon as the process is started, so other services can start meanwhile; call
    `wait_healthy()` before using it. On exit the whole process group is stopped.
    """
    port = free_port()
    ui_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url or f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_URL": ui_url,
        # The UI asks `/ui-settings` where the API is; unset, that says port 4200, not this one.
        "PREFECT_SERVER_UI_API_URL": f"{ui_url}/api",
        "DO_NOT_TRACK": "1",
        **settings,
    }
    env.pop("PREFECT_API_URL", None)
    with open(home / "server.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
             "--port", str(port), *([] if scheduler else ["--no-scheduler"]), "--analytics-off"],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the demo, which stops the server in order
        )
    try:
        yield PrefectServer(process, home, f"{ui_url}/api", ui_url)
    finally:
        stop_process_group(process)


def stop_process_group(process: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after `grace` seconds."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while process_group_alive(process) and time.monotonic() < deadline:
        time.sleep(0.2)
    if process_group_alive(process):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def process_group_alive(process: subprocess.Popen) -> bool:
    process.poll()  # reap the leader, or it lingers as a zombie that still counts
    try:
        os.killpg(process.pid, 0)
        return True
    except ProcessLookupError:
        return False


@contextmanager
def use_server(server: PrefectServer) -> Iterator[None]:
    """Point this process's Prefect client (runs, events, logs) at `server`, then back."""
    from prefect.context import _temporary_global_settings_context, get_settings_context
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_UI_URL,
        temporary_settings,
    )

    _drain_prefect_workers()  # event/log workers built for another server must not be reused
    with temporary_settings({
        PREFECT_API_URL: server.api_url, PREFECT_UI_URL: server.ui_url,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,  # saves ~1 s per run; nothing watches them here
    }):
        # Background threads (the event and log workers) read the process-global settings:
        # the same private helper Prefect's own test harness uses to switch them.
        with _temporary_global_settings_context(get_settings_context()):
            try:
                yield
            finally:
                _drain_prefect_workers()


def _drain_prefect_workers() -> None:
    """Send what the event and log workers still hold, and retire them."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all()


@contextmanager
def moto_server() -> Iterator[str]:
    """moto on 127.0.0.1 (in this process, so the seed can backdate resources); yields its URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port())
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    # moto keeps accounts per process: a second demo in one process starts from an empty one.
    httpx.post(f"{url}/moto-api/reset").raise_for_status()
    try:
        yield url
    finally:
        server.stop()


@contextmanager
def demo_databases(names: Sequence[str]) -> Iterator[dict[str, str]]:
    """Fresh PostgreSQL databases (found or started server), dropped on exit: name -> conninfo."""
    import psycopg

    from deployments.local_postgres import postgres_server, with_database

    with postgres_server() as admin:
        prefix = f"dpo_demo_{os.getpid()}_"
        created = {}
        try:
            with psycopg.connect(admin, autocommit=True) as conn:
                for name in names:
                    conn.execute(f'CREATE DATABASE "{prefix}{name}"')
                    created[name] = with_database(admin, prefix + name)
            yield created
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                for name in created:  # FORCE ends sessions the demo left open
                    conn.execute(f'DROP DATABASE IF EXISTS "{prefix}{name}" WITH (FORCE)')


@contextmanager
def bigquery_with_history(scale: int, now: datetime | None = None) -> Iterator[str]:
    """The BigQuery emulator (deployments/local_bigquery.py) with seeded job history."""
    from deployments.demo_seed import seed_bigquery
    from deployments.local_bigquery import bigquery_emulator

    with bigquery_emulator(project=BQ_PROJECTS[0]) as endpoint:
        seed_bigquery(endpoint, now or datetime.now(timezone.utc), scale)
        yield endpoint


@contextmanager
def snowflake_with_usage(now: datetime) -> Iterator[tuple[str, str]]:
    """A fakesnow server (deployments/local_snowflake.py) with seeded ACCOUNT_USAGE: (endpoint, what)."""
    from deployments.demo_seed import seed_snowflake
    from deployments.local_snowflake import fakesnow_server

    with fakesnow_server() as endpoint:
        yield endpoint, seed_snowflake(endpoint, now)


# --- the demo ---------------------------------------------------------------------------


@contextmanager
def quiet_prefect_console() -> Iterator[None]:
    """Flow logs go to the Prefect UI; the terminal shows warnings, progress and chat messages."""
    from prefect.logging.handlers import PrefectConsoleHandler

    handlers = {h for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", "")
                for h in logging.getLogger(name).handlers if isinstance(h, PrefectConsoleHandler)}
    levels = {h: h.level for h in handlers}
    for handler in handlers:
        handler.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for handler, level in levels.items():
            handler.setLevel(level)


def plan(specs: Sequence[Mapping[str, Any]], jobs: Mapping[str, DemoJob],
         env: DemoEnv) -> tuple[list[tuple[str, Any, dict[str, Any]]], list[JobResult], list[str]]:
    """Which flows to run (name, flow, parameters), which are skipped, and notes."""
    runs, skipped, notes, seen = [], [], [], set()
    for spec in specs:
        try:
            fl = load_flow(spec["entrypoint"])
        except (ImportError, AttributeError, ValueError) as exc:
            skipped.append(JobResult(spec.get("name", spec["entrypoint"]), "skipped",
                                     note=f"cannot load {spec['entrypoint']}: {exc}"))
            continue
        if fl.name in seen:  # several deployments of one flow: the demo runs the flow once
            continue
        seen.add(fl.name)
        job = jobs.get(fl.name)
        if job is None:
            skipped.append(JobResult(fl.name, "skipped", note="no demo parameters: add it to DEMO_JOBS"))
        elif missing := sorted(job.needs - env.available):
            skipped.append(JobResult(fl.name, "skipped", note=f"needs {', '.join(missing)}, not available"))
        else:
            pinned = {"now": env.now} if "now" in fl.parameters.properties else {}
            runs.append((fl.name, fl, {**pinned, **(spec.get("parameters") or {}), **job.parameters_for(env)}))
    for name in sorted(set(jobs) - seen):
        notes.append(f"{name}: in DEMO_JOBS but not in prefect.yaml yet")
    return runs, skipped, notes


def run_job(name: str, fl: Any, parameters: dict[str, Any], store: Any, out) -> JobResult:
    out(f"▶ {name} ...")
    started = time.monotonic()
    try:
        state = fl.with_options(timeout_seconds=JOB_TIMEOUT_SECONDS)(**parameters, return_state=True)
        status, note = state.name, ("" if state.is_completed() else (state.message or "")[:200])
    except Exception as exc:  # bad parameters fail before a run exists
        status, note = "Failed", f"{type(exc).__name__}: {exc}"[:200]
    result = JobResult(name, status, time.monotonic() - started, note=note)
    with store.engine.connect() as conn:
        count, usd = conn.execute(
            sa.text("select count(*), coalesce(sum(monthly_cost_usd), 0) from findings "
                    "where job = :job and status = 'open'"), {"job": name}).one()
    result.findings, result.monthly_usd = int(count), float(usd)
    out(f"  {status} in {result.seconds:.1f}s: {result.findings} open findings"
        + (f", ${result.monthly_usd:,.2f}/month" if result.monthly_usd else "")
        + (f" ({note})" if note else ""))
    return result


def _server_inventory() -> tuple[list[str], list[str]]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        blocks = sorted(f"{b.block_type.slug}/{b.name}" for b in client.read_block_documents())
        automations = sorted(a.name for a in client.read_automations())
    return blocks, automations


@dataclass
class DemoRun:
    """A finished demo whose services are still up: for a look around before they stop."""

    summary: DemoSummary
    server: PrefectServer
    moto_endpoint: str
    env: DemoEnv
    store: Any
    chat: Any
    credentials: DemoCredentials


@contextmanager
def demo(
    jobs: Mapping[str, DemoJob] | None = None,
    specs: Sequence[Mapping[str, Any]] | None = None,
    seed_scale: int = 3,
    out=print,
    credentials: DemoCredentials = DemoCredentials(),
) -> Iterator[DemoRun]:
    """Start everything and run the jobs; yields while everything is still up, stops it on exit."""
    started = time.monotonic()
    jobs = DEMO_JOBS if jobs is None else jobs
    specs = deployment_specs() if specs is None else specs
    with ExitStack() as stack:
        home = Path(tempfile.mkdtemp(prefix="dataplatform-ops-demo-"))
        stack.callback(shutil.rmtree, home, ignore_errors=True)
        # Fake credentials before boto3/moto load anything: the demo can never reach real AWS.
        stack.enter_context(environment(
            MOTO_EC2_LOAD_DEFAULT_AMIS="false", AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing", AWS_SESSION_TOKEN=None, AWS_PROFILE=None,
            AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull, DO_NOT_TRACK="1",
        ))
        out("Starting a Prefect server (SQLite), moto, PostgreSQL and a Google Chat receiver ...")
        server = stack.enter_context(prefect_server(home))
        endpoint = stack.enter_context(moto_server())
        stack.enter_context(environment(AWS_ENDPOINT_URL=endpoint))
        from deployments.demo_seed import seed_account
        from deployments.local_reservations import reservations_answered

        reservations = stack.enter_context(reservations_answered())  # listings moto lacks

        out(f"Seeding a messy AWS account in moto ({endpoint}) while the Prefect server starts ...")
        env, notes = DemoEnv(home), []
        seeded = seed_account(endpoint, scale=seed_scale, now=env.now, reservations=reservations)
        out(f"  planted {seeded.summary()}")
        try:
            env.postgres = stack.enter_context(demo_databases(DEMO_DATABASES))
        except RuntimeError as exc:  # no server and no binaries to start one
            notes.append(f"PostgreSQL unavailable, its jobs are skipped: {exc}")
        if any(BIGQUERY in job.needs for job in jobs.values()):
            try:
                env.bigquery_endpoint = stack.enter_context(bigquery_with_history(seed_scale, env.now))
            except RuntimeError as exc:  # e.g. DuckDB's spatial extension missing
                notes.append(f"BigQuery emulator unavailable, its jobs are skipped: {exc}")
        snowflake_seeded = None
        if any(SNOWFLAKE in job.needs for job in jobs.values()):
            try:
                env.snowflake_endpoint, snowflake_seeded = stack.enter_context(snowflake_with_usage(env.now))
            except RuntimeError as exc:  # fakesnow did not start
                notes.append(f"fakesnow unavailable, the Snowflake jobs are skipped: {exc}")

        server.wait_healthy()
        out(f"Prefect server up: {server.ui_url}")
        stack.enter_context(use_server(server))
        stack.enter_context(quiet_prefect_console())
        from deployments.automations import apply_automations
        from deployments.chat_receiver import ChatReceiver

        chat = stack.enter_context(ChatReceiver(echo=True))
        store = save_blocks(home, endpoint, chat.url, credentials)
        apply_automations(chat_block=CHAT_BLOCK)
        if env.postgres:
            out(f"  PostgreSQL: {setup_postgres(env, stack)}")
        if env.snowflake_endpoint:
            from deployments.local_snowflake import save_connector

            save_connector(SNOWFLAKE_BLOCK, SNOWFLAKE_ACCOUNT)  # key-pair auth, as in production
            out(f"  Snowflake (fakesnow, {env.snowflake_endpoint}): {snowflake_seeded}")

        runs, results, plan_notes = plan(specs, jobs, env)
        notes += plan_notes
        for name, fl, parameters in runs:
            results.append(run_job(name, fl, parameters, store, out))

        # Each job that found something or failed sends one message through the automations.
        expected = sum(1 for r in results if r.status != "skipped" and (r.findings or r.status != "Completed"))
        chat.wait_for(expected, timeout=60)
        messages = chat.settle(quiet=2, timeout=30)
        blocks, automations = _server_inventory()
        summary = DemoSummary(
            results=sorted(results, key=lambda r: r.job), notes=notes, planted=seeded.summary(),
            messages=messages, ui_url=server.ui_url, blocks=blocks, automations=automations,
            server_pid=server.process.pid, seconds=time.monotonic() - started,
        )
        yield DemoRun(summary, server, endpoint, env, store, chat, credentials)
        out("Stopping the services ...")


def run_demo(
    jobs: Mapping[str, DemoJob] | None = None,
    specs: Sequence[Mapping[str, Any]] | None = None,
    seed_scale: int = 3,
    keep_running: bool = False,
    out=print,
) -> DemoSummary:
    """Start everything, run the jobs, summarize, stop everything. Returns the summary."""
    with demo(jobs, specs, seed_scale, out) as run:
        out(run.summary.render())
        if keep_running:
            out(f"\nEverything stays up: open {run.server.ui_url}. Press Ctrl-C to stop.")
            while True:
                time.sleep(1)
    return run.summary


def setup_postgres(env: DemoEnv, stack: ExitStack) -> str:
    """Blocks for the demo databases, a pipeline's two ends, and live trouble on the warehouse."""
    from psycopg.conninfo import conninfo_to_dict

    from blocks.pipelines import IntegrityPipelines
    from blocks.warehouse import WarehouseConnection
    from deployments.demo_seed import seed_pipeline, seed_redshift_views, warehouse_trouble

    redshift = {"dialect": "redshift", "cluster_identifier": "analytics", "region": REGIONS[0]}
    for database, block, extra in (("warehouse", WAREHOUSE_BLOCK, {}), ("app", APP_DB_BLOCK, {}),
                                   ("analytics", ANALYTICS_DB_BLOCK, {}), ("redshift", REDSHIFT_BLOCK, redshift)):
        p = conninfo_to_dict(env.postgres[database])
        WarehouseConnection(
            host=p.get("host", "127.0.0.1"), port=int(p.get("port", 5432)), database=p["dbname"],
            user=p.get("user", "postgres"), password=p.get("password"), statement_timeout_seconds=10,
            **extra,
        ).save(block, overwrite=True)
    seed_redshift_views(env.postgres["redshift"])
    counts = seed_pipeline(env.postgres["app"], env.postgres["analytics"], env.now)
    IntegrityPipelines(pipelines=[{
        "name": "orders", "owner": "@data-eng", "window_days": 7, "freshness_sla_minutes": 60,
        "source": {"connection": APP_DB_BLOCK, "table": "public.orders", "day_column": "created_at",
                   "freshness_column": "updated_at"},
        "target": {"connection": ANALYTICS_DB_BLOCK, "table": "raw.orders", "day_column": "created_at",
                   "freshness_column": "loaded_at"},
    }]).save(PIPELINES_BLOCK, overwrite=True)
    stack.enter_context(warehouse_trouble(env.postgres["warehouse"]))
    return (f"pipeline `orders`: {counts['source_rows']} source rows, {counts['target_rows']} in the "
            "target, loads stopped 3 h ago; a long query and a lock wait on the warehouse; "
            "7 queries queued in Redshift WLM")


def save_blocks(home: Path, endpoint: str, chat_url: str, credentials: DemoCredentials = DemoCredentials()):
    """The blocks the jobs load: store (SQLite here), AWS credentials for moto, chat webhook."""
    from prefect_aws import AwsCredentials
    from prefect_aws.client_parameters import AwsClientParameters

    from blocks.google_chat import GoogleChatWebhook
    from blocks.store import OpsStore

    store = OpsStore(url=f"sqlite:///{home / 'store.db'}")
    store.check()
    store.save(STORE_BLOCK, overwrite=True)
    AwsCredentials(
        aws_access_key_id=credentials.aws_access_key_id,
        aws_secret_access_key=credentials.aws_secret_access_key, region_name="us-east-1",
        aws_client_parameters=AwsClientParameters(endpoint_url=endpoint),
    ).save(AWS_BLOCK, overwrite=True)
    webhook = chat_url.split("?")[0] + f"?key={credentials.chat_key}&token={credentials.chat_token}"
    GoogleChatWebhook(url=webhook, max_backoff_seconds=1, outbox=store).save(CHAT_BLOCK, overwrite=True)
    return store


def _stop_on_sigterm() -> None:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    keep = parser.add_mutually_exclusive_group()
    keep.add_argument("--keep-running", action="store_true", default=None,
                      help="after the summary, keep everything up until Ctrl-C (default on a terminal)")
    keep.add_argument("--exit", dest="keep_running", action="store_false",
                      help="stop everything right after the summary")
    parser.add_argument("--scale", type=int, default=3, help="how much waste to plant (default 3)")
    args = parser.parse_args(argv)
    keep_running = sys.stdin.isatty() if args.keep_running is None else args.keep_running
    _stop_on_sigterm()
    try:
        run_demo(seed_scale=args.scale, keep_running=keep_running)
    except KeyboardInterrupt:
        print("\nStopped; everything the demo started has been shut down.")


if __name__ == "__main__":
    main()
