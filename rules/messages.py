"""What the chat messages say. Pure: the tasks fill in the data, automations only route."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
) -> tuple[str, str]:
    """Subject and body for a failed, crashed or timed-out flow run."""
    subject = f"[{flow_name}] run {flow_run_name} {state_name}"
    body = [f"Flow {flow_name}, run {flow_run_name}: {state_name}"]
    if deployment:
        body.append(f"Deployment: {deployment}")
    if run_url:
        body.append(f"Run: {run_url}")
    body += ["", "Error:", truncate(state_message.strip(), 3_000)]
    if parameters:
        shown = ", ".join(f"{k}={truncate(str(v), 200)}" for k, v in parameters.items())
        body += ["", f"Parameters: {truncate(shown, 1_000)}"]
    if log_lines:
        tail = truncate("\n".join(log_lines), 6_000)
        body += ["", "Last log lines:", tail]
    return subject, truncate(redact("\n".join(body), secrets), MAX_BODY_CHARS)
