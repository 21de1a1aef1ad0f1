"""The "tell" step every job ends with: store, events and artifacts, always all three."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from prefect import task

from blocks.store import OpsStore
from rules.findings import Finding, Transitions, diff_findings
from tasks.notify import emit_findings_digest, emit_outbox_flush
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
    """Record this run's findings, announce what changed once, and publish the report.

    Open findings in a scope named in `errors` stay open: the run could not look there.
    """
    transitions = diff_findings(
        store.open_findings(job), findings, now, repeat_interval, failed_scopes=(errors or {}).keys()
    )
    store.save_transitions(job, transitions, now)
    if not emit_findings_digest(job, transitions, store) and store.pending_message_count():
        emit_outbox_flush(job)  # chat was down earlier: deliver what waits, even on a quiet run
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

    An event is announced only by the run that first records it in the store (`claim_findings`),
    so overlapping windows, overlapping runs and retries repeat nothing. Events are never
    reminded nor resolved aloud: those no longer seen are closed quietly.
    """
    announced = Transitions(opened=store.claim_findings(job, events, now))
    current = {e.key for e in events}
    gone = sorted(k for k in store.open_findings(job) if k not in current)
    store.save_transitions(job, Transitions(resolved=gone), now)
    if not emit_findings_digest(job, announced, store) and store.pending_message_count():
        emit_outbox_flush(job)  # as in `tell`: deliver what waits, even on a quiet run
    write_report(job, events, announced, errors=errors, notes=notes, table=table)
    return announced
