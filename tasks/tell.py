"""The "tell" step every job ends with: store, events and artifacts, always all three."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from prefect import task

from blocks.store import OpsStore
from rules.findings import Finding, Transitions, diff_findings
from tasks.notify import emit_findings_digest
from tasks.report import write_report


@task(name="tell")
def tell(
    job: str,
    findings: Sequence[Finding],
    store: OpsStore,
    now: datetime,
    repeat_interval: timedelta = timedelta(hours=24),
    errors: Mapping[str, str] | None = None,
    notes: Sequence[str] = (),
    table: Sequence[Mapping[str, Any]] | None = None,
) -> Transitions:
    """Record this run's findings, announce what changed once, and publish the report."""
    transitions = diff_findings(store.open_findings(job), findings, now, repeat_interval)
    store.save_transitions(job, transitions, now)
    emit_findings_digest(job, transitions)
    write_report(job, findings, transitions, errors=errors, notes=notes, table=table)
    return transitions


@task(name="tell-events")
def tell_events(
    job: str,
    events: Sequence[Finding],
    store: OpsStore,
    now: datetime,
    errors: Mapping[str, str] | None = None,
    notes: Sequence[str] = (),
    table: Sequence[Mapping[str, Any]] | None = None,
) -> Transitions:
    """`tell` for one-off events (an expensive query, a budget crossed): each announced once, ever.

    Keys the store has seen before, open or resolved, are dropped, so overlapping windows and
    retried runs repeat nothing. New events are saved before they are announced; when an
    overlapping run saved one of them first, the insert fails and the choice is made again.
    Events have nothing to resolve: the previous run's are closed quietly.
    """
    for attempt in range(3):
        seen = store.known_keys(job, (e.key for e in events))
        new = list({e.key: e for e in events if e.key not in seen}.values())
        closed = sorted(store.open_findings(job))
        try:
            store.save_transitions(job, Transitions(opened=new, resolved=closed), now)
            break
        except sa.exc.IntegrityError:
            if attempt == 2:
                raise
    announced = Transitions(opened=new)
    emit_findings_digest(job, announced)
    write_report(job, events, announced, errors=errors, notes=notes, table=table)
    return announced
