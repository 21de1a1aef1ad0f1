"""The one artifact writer: a findings table and a markdown summary per job, with stable keys."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from rules.findings import Finding, Transitions
from rules.messages import money
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
    total = sum(f.monthly_cost_usd or 0 for f in findings)
    lines = [f"# {job}", "", f"**{len(findings)} findings**"]
    if total:
        lines[-1] += f", {money(total)} in total"
    if transitions is not None:
        lines.append(
            f"New {len(transitions.opened)}, escalated {len(transitions.escalated)}, "
            f"reminded {len(transitions.reminded)}, resolved {len(transitions.resolved)}."
        )
    if table is None and len(findings) > MAX_FINDING_ROWS:
        lines.append(f"The table shows the first {MAX_FINDING_ROWS:,} of {len(findings):,} findings, most "
                     "severe and most expensive first; all are in the store's `findings` table.")
    lines += [f"- {redact(n)}" for n in notes]
    if errors:
        lines += ["", "## Not covered this run", ""]
        lines += [f"- **{scope}**: {redact(msg)}" for scope, msg in sorted(errors.items())]
    create_markdown_artifact(
        key=artifact_key(job, "summary"), markdown="\n".join(lines), description=f"{job} summary"
    )


def write_table(job: str, suffix: str, rows: Sequence[Mapping[str, Any]], description: str) -> None:
    """An extra table artifact of a job (a plan, the actions taken), under a stable key."""
    create_table_artifact(key=artifact_key(job, suffix), table=list(rows), description=description)
