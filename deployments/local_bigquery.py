"""A local BigQuery for the tests and the demo: bqemulator on 127.0.0.1, and real clients for it.

    with bigquery_emulator(project="demo-project") as endpoint:
        client = emulator_client(endpoint, "demo-project")
        create_table(client, "demo-project.ops.jobs", JOBS_SCHEMA, partition_field="creation_time")
        insert_rows(client, "demo-project.ops.jobs", [job_row("demo-project", "j1", "a@x.test",
                                                              created, 2 * 1024**4)])

The emulator runs in its own process (so its DuckDB work never competes with the caller for
the GIL) on free ports, in memory, and is stopped on exit. It needs DuckDB's spatial
extension; `ensure_spatial_extension` installs it from the `duckdb-extension-spatial` wheel's
file so nothing is downloaded. The client is the real `google.cloud.bigquery.Client`, pointed
at the emulator with anonymous credentials: nothing in it is mocked.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

DEFAULT_PROJECT = "local-project"
_F = bigquery.SchemaField
# The columns of `region-XX`.INFORMATION_SCHEMA.JOBS_BY_PROJECT that the cost jobs read, with
# their real types. No emulator has the JOBS views: seed an ordinary table with this schema
# and pass it to the flows as `jobs_table`.
JOBS_SCHEMA = (
    _F("creation_time", "TIMESTAMP"), _F("project_id", "STRING"), _F("project_number", "INT64"),
    _F("user_email", "STRING"), _F("job_id", "STRING"), _F("job_type", "STRING"),
    _F("statement_type", "STRING"), _F("priority", "STRING"), _F("start_time", "TIMESTAMP"),
    _F("end_time", "TIMESTAMP"), _F("query", "STRING"), _F("state", "STRING"),
    _F("reservation_id", "STRING"), _F("total_bytes_processed", "INT64"),
    _F("total_slot_ms", "INT64"), _F("cache_hit", "BOOL"),
    _F("destination_table", "RECORD", fields=[
        _F("project_id", "STRING"), _F("dataset_id", "STRING"), _F("table_id", "STRING")]),
    _F("error_result", "RECORD", fields=[
        _F("reason", "STRING"), _F("location", "STRING"), _F("debug_info", "STRING"),
        _F("message", "STRING")]),
    _F("parent_job_id", "STRING"), _F("total_bytes_billed", "INT64"),
)
STARTUP_TIMEOUT_S = 90.0  # a cold start is ~2 s; a machine shared by many test runs is slower


def job_row(
    project: str,
    job_id: str,
    user: str,
    created: datetime,
    bytes_billed: int,
    *,
    statement: str = "SELECT",
    cached: bool = False,
    parent: str | None = None,
    destination: tuple[str, str, str] | None = None,
    query: str = "SELECT 1",
    seconds: int = 60,
    state: str = "DONE",
) -> dict[str, Any]:
    """One row of a `JOBS_SCHEMA` table: a query job as the JOBS view shows it."""
    start = created + timedelta(seconds=1)
    return {
        "creation_time": created.isoformat(), "project_id": project, "project_number": 1234,
        "user_email": user, "job_id": job_id, "job_type": "QUERY", "statement_type": statement,
        "priority": "INTERACTIVE", "start_time": start.isoformat(),
        "end_time": (start + timedelta(seconds=seconds)).isoformat() if state == "DONE" else None,
        "query": query, "state": state, "reservation_id": None,
        # a cached job processed bytes once, but bills none now
        "total_bytes_processed": bytes_billed or (3 * 1024**4 if cached else 0),
        "total_slot_ms": 1000 * seconds, "cache_hit": cached,
        "destination_table": dict(zip(("project_id", "dataset_id", "table_id"), destination,
                                      strict=True)) if destination else None,
        "error_result": None, "parent_job_id": parent, "total_bytes_billed": bytes_billed,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_spatial_extension() -> None:
    """Install DuckDB's spatial extension from the `duckdb-extension-spatial` wheel (no download).

    bqemulator runs `INSTALL spatial; LOAD spatial` at start; with the extension already in
    DuckDB's extension directory that is a no-op instead of a network fetch.
    """
    import duckdb
    import duckdb_extension_spatial

    conn = duckdb.connect(":memory:")
    try:
        installed = conn.execute(
            "select installed from duckdb_extensions() where extension_name = 'spatial'"
        ).fetchone()
        if installed and installed[0]:
            return
        root = Path(duckdb_extension_spatial.__file__).parent / "extensions"
        files = sorted(root.glob(f"v{duckdb.__version__}/spatial.duckdb_extension"))
        if not files:
            raise RuntimeError(
                f"duckdb-extension-spatial has no build for DuckDB {duckdb.__version__}: install "
                f"duckdb-extension-spatial=={duckdb.__version__} (`uv sync` does)."
            )
        conn.execute(f"INSTALL '{files[0]}'")
    finally:
        conn.close()


def _wait_until_up(endpoint: str, proc: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"bqemulator exited with code {proc.returncode} while starting:\n"
                + log_path.read_text(errors="replace")[-3000:]
            )
        try:
            httpx.get(f"{endpoint}/bigquery/v2/projects", timeout=2.0)
            return  # any HTTP answer means the server is listening
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"bqemulator did not answer on {endpoint} within {timeout:.0f} s")


@contextmanager
def bigquery_emulator(
    project: str = DEFAULT_PROJECT, timeout: float = STARTUP_TIMEOUT_S
) -> Iterator[str]:
    """Run bqemulator on 127.0.0.1 (free ports, in memory) and yield its REST endpoint."""
    ensure_spatial_extension()
    rest_port, grpc_port = _free_port(), _free_port()
    endpoint = f"http://127.0.0.1:{rest_port}"
    env = {
        **os.environ,
        # Avro load/extract is not needed here and would try to download an extension.
        "BQEMU_ENABLE_FORMAT_EXTENSIONS": "false",
        "BQEMU_METRICS_ENABLED": "false",
    }
    with tempfile.TemporaryDirectory(prefix="bqemu-") as tmp:
        log_path = Path(tmp) / "bqemulator.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bqemulator", "start", "--ephemeral",
                 "--rest-host", "127.0.0.1", "--rest-port", str(rest_port),
                 "--grpc-host", "127.0.0.1", "--grpc-port", str(grpc_port),
                 "--project", project, "--log-level", "warning"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,  # Ctrl-C in a demo stops it through `finally`, not twice
            )
            try:
                _wait_until_up(endpoint, proc, log_path, timeout)
                yield endpoint
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def emulator_client(endpoint: str, project: str = DEFAULT_PROJECT, location: str | None = None
                    ) -> bigquery.Client:
    """A real BigQuery client for the emulator at `endpoint` (anonymous credentials)."""
    return bigquery.Client(
        project=project,
        location=location,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=endpoint),
    )


def create_dataset(client: bigquery.Client, dataset_id: str) -> bigquery.Dataset:
    """Create `project.dataset` (or `dataset` in the client's project) if missing."""
    return client.create_dataset(dataset_id, exists_ok=True)


def create_table(
    client: bigquery.Client,
    table_id: str,
    schema: Sequence[bigquery.SchemaField],
    partition_field: str | None = None,
) -> bigquery.Table:
    """Create `project.dataset.table` (and its dataset) with `schema`, replacing an old one."""
    project, dataset, _ = table_id.split(".")
    create_dataset(client, f"{project}.{dataset}")
    client.delete_table(table_id, not_found_ok=True)
    table = bigquery.Table(table_id, schema=list(schema))
    if partition_field:
        table.time_partitioning = bigquery.TimePartitioning(field=partition_field)
    return client.create_table(table)


def insert_rows(
    client: bigquery.Client, table_id: str, rows: Sequence[Mapping[str, Any]], batch: int = 500
) -> int:
    """Stream rows into a table (insertAll); raises with the emulator's errors if any row fails."""
    table = client.get_table(table_id)
    rows = list(rows)
    for start in range(0, len(rows), batch):
        errors = client.insert_rows(table, rows[start : start + batch])
        if errors:
            raise RuntimeError(f"insert into {table_id} failed: {errors[:3]}")
    return len(rows)
