"""Read BigQuery job history: one query per (project, region), cheap by construction.

The query filters on `creation_time` (the JOBS views' partitioning column), reads only the
columns the rules need and cuts the query text in SQL, and reports what it billed itself.
Clients come from a prefect-gcp `GcpCredentials` block, or, for the emulator in tests and
the demo, from an endpoint with anonymous credentials.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from prefect import task
from prefect.cache_policies import NONE
from prefect_gcp import GcpCredentials

from blocks.loading import load_block
from rules.bigquery_cost import BUDGET_SCOPE, JobRecord, jobs_table_path
from rules.config import ConfigError
from rules.findings import Coverage

QUERY_TIMEOUT_S = 300

# Only what the rules read; `query` is cut in SQL so long texts are not shipped back.
JOBS_SQL = """
SELECT
  project_id, user_email, job_id, creation_time, start_time, end_time, statement_type,
  cache_hit, total_bytes_billed, total_slot_ms, parent_job_id,
  destination_table.project_id AS destination_project,
  destination_table.dataset_id AS destination_dataset,
  destination_table.table_id AS destination_table_id,
  SUBSTR(query, 1, @query_chars) AS query
FROM {table}
WHERE creation_time >= @start AND creation_time < @end
  AND job_type = 'QUERY' AND state = 'DONE'
"""


@dataclass(frozen=True)
class BigQueryAccess:
    """How to reach BigQuery: a `GcpCredentials` block, or an emulator endpoint."""

    credentials: GcpCredentials | None = None
    endpoint: str | None = None

    def client(self, project: str, location: str | None = None) -> bigquery.Client:
        if self.endpoint:
            return bigquery.Client(
                project=project, location=location, credentials=AnonymousCredentials(),
                client_options=ClientOptions(api_endpoint=self.endpoint),
            )
        return self.credentials.get_bigquery_client(project=project, location=location)


def bigquery_access(gcp_credentials: GcpCredentials | str, emulator_endpoint: str | None) -> BigQueryAccess:
    """The flows' credentials seam: the named block in production, or the emulator's endpoint."""
    if emulator_endpoint:
        return BigQueryAccess(endpoint=emulator_endpoint)
    try:
        credentials = load_block(GcpCredentials, gcp_credentials, "gcp_credentials")
    except auth_exc.GoogleAuthError as exc:  # the block resolves default credentials on load
        raise ConfigError(
            f"GcpCredentials block {gcp_credentials!r} (parameter `gcp_credentials`) has no "
            f"usable credentials ({type(exc).__name__}): give it a service account key, or run "
            "where Application Default Credentials exist."
        ) from None
    return BigQueryAccess(credentials=credentials)


@dataclass
class JobsRead:
    """The outcome of reading one (project, region): jobs, or why they could not be read."""

    project: str
    region: str
    jobs: list[JobRecord] = field(default_factory=list)
    bytes_billed: int = 0  # by our own monitoring query
    error: str | None = None

    @property
    def scope(self) -> str:
        return f"{self.project}/{self.region}"


def describe_error(exc: Exception, project: str, region: str, table: str) -> str:
    """What went wrong for a project/region, and the fix, without a stack trace."""
    # The first line only: the client appends the job id and location on further lines.
    detail = next(iter((getattr(exc, "message", None) or str(exc)).strip().splitlines()), "")
    if isinstance(exc, gexc.Forbidden):
        return (
            f"project {project} region {region}: permission denied reading {table} — grant the "
            f"credentials roles/bigquery.resourceViewer (bigquery.jobs.listAll) and "
            f"roles/bigquery.jobUser (bigquery.jobs.create) on {project}. ({detail})"
        )
    if isinstance(exc, gexc.NotFound):
        return (
            f"project {project} region {region}: {table} not found — check the region (job "
            f"history is per region: us, eu, us-central1, ...) and the project id. ({detail})"
        )
    if isinstance(exc, gexc.BadRequest):
        return (
            f"project {project} region {region}: query on {table} rejected — check the region "
            f"and the `jobs_table` template. ({detail})"
        )
    return f"project {project} region {region}: {type(exc).__name__}: {detail}"


def _record(row: bigquery.Row, region: str) -> JobRecord:
    dest = ".".join(
        p for p in (row["destination_project"], row["destination_dataset"],
                    row["destination_table_id"]) if p
    )
    return JobRecord(
        project_id=row["project_id"],
        region=region,
        user_email=row["user_email"] or "",
        job_id=row["job_id"],
        creation_time=row["creation_time"],
        start_time=row["start_time"],
        end_time=row["end_time"],
        statement_type=row["statement_type"] or "",
        cache_hit=bool(row["cache_hit"]),
        total_bytes_billed=int(row["total_bytes_billed"] or 0),
        total_slot_ms=int(row["total_slot_ms"] or 0),
        parent_job_id=row["parent_job_id"] or "",
        destination_table=dest,
        query=row["query"] or "",
    )


@task(name="bigquery-list-jobs", task_run_name="list-jobs-{project}-{region}", cache_policy=NONE)
def list_jobs(
    access: BigQueryAccess,
    project: str,
    region: str,
    jobs_table: str,
    start: datetime,
    end: datetime,
    query_chars: int = 500,
) -> JobsRead:
    """Finished query jobs created in [start, end) in one project and region.

    A failure (no permission, wrong region) is returned as `error`, so the other
    projects and regions still complete.
    """
    table = jobs_table_path(jobs_table, project, region)
    config = bigquery.QueryJobConfig(
        query_parameters=[
            bigquery.ScalarQueryParameter("start", "TIMESTAMP", start),
            bigquery.ScalarQueryParameter("end", "TIMESTAMP", end),
            bigquery.ScalarQueryParameter("query_chars", "INT64", query_chars),
        ],
        use_query_cache=False,  # the view changes every second
    )
    try:
        client = access.client(project, location=region)
        job = client.query(JOBS_SQL.format(table=table), job_config=config, location=region)
        rows = job.result(timeout=QUERY_TIMEOUT_S)
        jobs = [_record(row, region) for row in rows]
    except (gexc.GoogleAPIError, auth_exc.GoogleAuthError, TimeoutError) as exc:
        return JobsRead(project, region, error=describe_error(exc, project, region, table))
    return JobsRead(project, region, jobs=jobs, bytes_billed=int(job.total_bytes_billed or 0))


def read_all(
    access: BigQueryAccess,
    projects: list[str],
    regions: list[str],
    jobs_table: str,
    starts: dict[str, datetime] | datetime,
    end: datetime,
    query_chars: int,
) -> list[JobsRead]:
    """`list_jobs` for every project x region, concurrently; `starts` may differ per scope."""
    futures = []
    for project in projects:
        for region in regions:
            start = starts if isinstance(starts, datetime) else starts[f"{project}/{region}"]
            futures.append(
                list_jobs.submit(access, project, region, jobs_table, start, end, query_chars)
            )
    return [f.result() for f in futures]


def coverage_of(reads: list[JobsRead]) -> Coverage:
    """Each project/region read, and the project (findings live per project) and `bigquery`
    (budgets span projects) only when all of their regions were read."""
    coverage = Coverage()
    for r in reads:
        coverage.mark_read(r.scope)
        if r.error:
            coverage.fail(r.scope, r.error)
    failed = {r.project for r in reads if r.error}
    coverage.read |= {r.project for r in reads} - failed
    if not failed:
        coverage.mark_read(BUDGET_SCOPE)
    return coverage
