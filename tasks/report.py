"""The one artifact writer: a findings table and a markdown summary per job, with stable keys."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.runtime import flow_run as runtime_flow_run
from prefect.settings import PREFECT_UI_URL

from rules.findings import Finding, Transitions
from rules.summary import Link, summary_markdown
from rules.text import redact

# A bigger findings table is unreadable in the UI and exceeds the size of an event the server
# publishes about it; every finding is in the store (and the dashboards) regardless.
MAX_FINDING_ROWS = 1_000


def artifact_key(job: str, suffix: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", f"{job}-{suffix}".lower()).strip("-")


def finding_rows(findings: Sequence[Finding]) -> list[dict[str, Any]]:
    return [
        {
            "severity": f.severity.value,
            "kind": f.kind,
            "resource": f.resource_id,
            "scope": f.scope,
            "monthly_usd": round(f.monthly_cost_usd, 2) if f.monthly_cost_usd is not None else "",
            "reason": redact(f.reason),
        }
        for f in sorted(findings, key=lambda f: (-f.severity.rank, -(f.monthly_cost_usd or 0), f.kind,
                                                 f.resource_id))
    ]


def write_report(
    job: str,
    findings: Sequence[Finding],
    transitions: Transitions | None = None,
    errors: Mapping[str, str] | None = None,
    notes: Sequence[str] = (),
    table: Sequence[Mapping[str, Any]] | None = None,
) -> None:
    """Publish the run's table (findings, or `table` when given) and a markdown summary.

    `errors` maps a scope that failed (a region, a table, a project) to what went wrong,
    so a partial run says plainly what it did not cover.
    """
    # A job's own table is its own size (pipelines, report lines); a findings table is capped.
    rows = list(table) if table is not None else finding_rows(findings)[:MAX_FINDING_ROWS]
    create_table_artifact(
        key=artifact_key(job, "findings"),
        table=rows,
        description=f"{job}: {len(findings)} findings",
    )
    cut = table is None and len(findings) > MAX_FINDING_ROWS
    markdown = summary_markdown(
        job, findings, transitions, errors, notes, links=run_links(job),
        table_note=f"The table shows the first {MAX_FINDING_ROWS:,} of {len(findings):,} findings, most "
                   "severe and most expensive first; all are in the store's `findings` table." if cut else None,
    )
    create_markdown_artifact(
        key=artifact_key(job, "summary"), markdown=markdown, description=f"{job} summary"
    )


def ui_link(path: str) -> str:
    """A link into the Prefect UI: absolute with PREFECT_UI_URL, else relative to the UI."""
    return f"{(PREFECT_UI_URL.value() or '').rstrip('/')}{path}"


def run_links(job: str) -> list[Link]:
    """What this flow run published before its summary (a plan, the actions taken) and, if it
    paused for a person's approval, the run page where that was answered."""
    run_id = runtime_flow_run.id
    if not run_id:
        return []
    own = {artifact_key(job, "findings"), artifact_key(job, "summary")}
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
        paused = any(state.is_paused() for state in client.read_flow_run_states(run_id))
    keys = sorted({a.key: a.description for a in artifacts if a.key and a.key not in own}.items())
    links = [Link(description or key, ui_link(f"/artifacts/key/{key}")) for key, description in keys]
    if paused:
        links.append(Link("Approval: this run paused for it", ui_link(f"/runs/flow-run/{run_id}")))
    return links


def write_table(job: str, suffix: str, rows: Sequence[Mapping[str, Any]], description: str) -> None:
    """An extra table artifact of a job (a plan, the actions taken), under a stable key."""
    create_table_artifact(key=artifact_key(job, suffix), table=list(rows), description=description)
