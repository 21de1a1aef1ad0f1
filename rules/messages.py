"""What the chat messages say. Pure: the tasks fill in the data, automations only route."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rules.findings import Finding, Transitions
from rules.text import redact, truncate

# Room for the subject, links and the block's card wrapper inside Google Chat's 32,000 bytes.
MAX_BODY_CHARS = 12_000
MAX_ITEMS_PER_SECTION = 25


def money(value: float | None) -> str:
    return "" if value is None else f"${value:,.2f}/mo"


def _line(finding: Finding) -> str:
    where = f" ({finding.scope})" if finding.scope else ""
    cost = f" — {money(finding.monthly_cost_usd)}" if finding.monthly_cost_usd else ""
    return f"• [{finding.severity.value}] {finding.kind} {finding.resource_id}{where}{cost}: {finding.reason}"


def _section(title: str, lines: Sequence[str]) -> list[str]:
    if not lines:
        return []
    shown = list(lines[:MAX_ITEMS_PER_SECTION])
    if len(lines) > len(shown):
        shown.append(f"… and {len(lines) - len(shown)} more (see the run's artifact)")
    return [f"{title} ({len(lines)}):", *shown, ""]


def findings_digest(
    job: str, transitions: Transitions, run_url: str | None = None
) -> tuple[str, str]:
    """Subject and body of the one message a job run sends about its findings."""
    parts = [
        f"{len(transitions.opened)} new",
        f"{len(transitions.escalated)} escalated",
        f"{len(transitions.reminded)} still open",
        f"{len(transitions.resolved)} resolved",
    ]
    subject = f"[{job}] " + ", ".join(p for p in parts if not p.startswith("0 "))
    body: list[str] = []
    body += _section("New", [_line(f) for f in transitions.opened])
    body += _section("Escalated", [_line(f) for f in transitions.escalated])
    body += _section("Still open (reminder)", [_line(f) for f in transitions.reminded])
    body += _section("Resolved", [f"• {key.replace('|', ' ')}" for key in transitions.resolved])
    money_open = sum(
        f.monthly_cost_usd or 0
        for f in (*transitions.to_announce, *transitions.still_open)
    )
    if money_open:
        body.append(f"Open findings cost {money(money_open)} in total.")
    if run_url:
        body.append(f"Run: {run_url}")
    return subject, truncate(redact("\n".join(body).strip()), MAX_BODY_CHARS)


@dataclass(frozen=True)
class TaskFailure:
    """What a failed run's logs say about the exception that failed it."""

    task_name: str | None  # None: raised in the flow body
    task_run_name: str | None
    exception: str  # `Type: message`
    traceback_tail: Sequence[str] = field(default_factory=tuple)
    attempts: int = 1
    max_attempts: int = 1


def mentions(owners: Sequence[str]) -> str:
    """Google Chat mentions for owner ids (`123456789`, `users/123456789` or `all`)."""
    return " ".join(f"<users/{o.removeprefix('users/')}>" for o in owners if o.strip())


def flow_failure_message(
    *,
    flow_name: str,
    flow_run_name: str,
    state_name: str,
    state_message: str,
    log_lines: Sequence[str],
    parameters: Mapping[str, Any],
    deployment: str | None = None,
    run_url: str | None = None,
    secrets: tuple[str, ...] = (),
    failure: TaskFailure | None = None,
    flow_attempt: tuple[int, int] | None = None,
    owners: Sequence[str] = (),
) -> tuple[str, str]:
    """Subject and body for a failed, crashed or timed-out flow run.

    The subject starts with `[flow/deployment]` (or `[flow]`), which the chat block turns
    into one thread per deployment per day; `owners` are mentioned in the first line.
    """
    tag = f"{flow_name}/{deployment}" if deployment else flow_name
    headline = f"run {flow_run_name} {state_name}"
    if failure and failure.task_name:
        headline += f" in task {failure.task_name}"
    if failure:
        headline += f": {failure.exception}"
    subject = truncate(f"[{tag}] {headline}", 200)
    body = [f"{mentions(owners)} " if owners else ""]
    body[0] += f"Flow {flow_name}, run {flow_run_name}: {state_name}"
    if deployment:
        body.append(f"Deployment: {deployment}")
    if failure and failure.task_name:
        retries_left = failure.max_attempts - failure.attempts
        body.append(f"Failed task: {failure.task_name} ({failure.task_run_name}), attempt "
                    f"{failure.attempts} of {failure.max_attempts}, {retries_left} retries left")
    if flow_attempt:
        body.append(f"Flow run attempt {flow_attempt[0]} of {flow_attempt[1]}, "
                    f"{max(0, flow_attempt[1] - flow_attempt[0])} retries left")
    if run_url:
        body.append(f"Run: {run_url}")
    body += ["", "Error:", truncate(state_message.strip(), 3_000)]
    if failure and failure.traceback_tail:
        body += ["", "Traceback (last lines):", truncate("\n".join(failure.traceback_tail), 3_000)]
    if parameters:
        shown = ", ".join(f"{k}={truncate(str(v), 200)}" for k, v in parameters.items())
        body += ["", f"Parameters: {truncate(shown, 1_000)}"]
    if log_lines:
        tail = truncate("\n".join(log_lines), 6_000)
        body += ["", "Last log lines:", tail]
    return redact(subject, secrets), truncate(redact("\n".join(body), secrets), MAX_BODY_CHARS)
