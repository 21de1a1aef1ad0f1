"""The "tell" step every job ends with: store, events and artifacts, always all three."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from prefect import task
from pydantic import BaseModel

from blocks.store import OpsStore
from rules.config import Explained
from rules.findings import Coverage, Finding, Transitions, diff_findings, policy_changes
from tasks.notify import emit_findings_digest, emit_outbox_flush
from tasks.report import write_report


@task(name="tell")
def tell(
    job: str,
    findings: Sequence[Finding],
    store: OpsStore,
    now: datetime,
    coverage: Coverage,
    repeat_interval: timedelta = timedelta(hours=24),
    notes: Sequence[str] = (),
    table: Sequence[Mapping[str, Any]] | None = None,
    planned: Sequence[str] = (),
    policy: BaseModel | None = None,
) -> Transitions:
    """Record this run's findings, announce what changed once, and publish the report.

    `planned`: what a dry run would change, one line each; the digest lists them.
    `policy`: the run's policy; when it changed since the last run, what no longer shows is
    "no longer reported" with the changes, not "resolved".

    Only open findings where `coverage` says the run looked can resolve. A run that read
    nothing at all fails, after the report says why: 0 findings would be a false all-clear.
    """
    transitions = store.record_run(
        job, lambda known: diff_findings(known, findings, now, repeat_interval, coverage), now)
    if policy is not None:
        current = policy.model_dump(mode="json")
        before = store.get_watermark(job, "policy")
        transitions.policy_changes = policy_changes(json.loads(before) if before else None, current)
        store.set_watermark(job, "policy", json.dumps(current, sort_keys=True), now)
    if not emit_findings_digest(job, transitions, store, planned) and store.pending_message_count():
        emit_outbox_flush(job)  # chat was down earlier: deliver what waits, even on a quiet run
    write_report(job, findings, transitions, errors=coverage.errors, notes=notes, table=table)
    fail_if_nothing_read(job, coverage)
    return transitions


class NothingRead(Explained, RuntimeError):
    """The run could not read any of its targets: it proves nothing, so it fails."""


def fail_if_nothing_read(job: str, coverage: Coverage) -> None:
    if coverage.nothing_read:
        causes = "; ".join(f"{where}: {why}" for where, why in coverage.errors.items()) or "no targets"
        raise NothingRead(f"{job} could not read anything, so nothing is known to be healthy: {causes}")


@task(name="tell-events")
def tell_events(
    job: str,
    events: Sequence[Finding],
    store: OpsStore,
    now: datetime,
    coverage: Coverage,
    notes: Sequence[str] = (),
    table: Sequence[Mapping[str, Any]] | None = None,
) -> Transitions:
    """`tell` for one-off events (an expensive query, a budget crossed): each announced once, ever.

    An event is announced only by the run that first records it in the store (`claim_findings`),
    so overlapping windows, overlapping runs and retries repeat nothing. Events are never
    reminded nor resolved aloud: those no longer seen where the run looked are closed quietly.
    """
    announced = Transitions(opened=store.claim_findings(job, events, now))
    current = {e.key for e in events}
    store.record_run(job, lambda known: Transitions(resolved=sorted(
        k for k, f in known.items() if k not in current and coverage.covers(f.kind, f.scope, f.resource_id))), now)
    if not emit_findings_digest(job, announced, store) and store.pending_message_count():
        emit_outbox_flush(job)  # as in `tell`: deliver what waits, even on a quiet run
    write_report(job, events, announced, errors=coverage.errors, notes=notes, table=table)
    fail_if_nothing_read(job, coverage)
    return announced
