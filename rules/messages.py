"""What the chat messages say, in each language. Pure: the tasks fill in the data, automations
only route.

Every kind of message is built here: the findings digest, a failed run, a late run, a run with
failed tasks (`rules/pipeline_failures.py` picks which), an approval waiting, expired or
applied, a silent deployment and a crash (as automation templates), and the chat block's own
notes. Text is marked for gettext (`rules/i18n.py`); data (job names, resources, reasons,
errors, log lines) is shown as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rules.findings import Finding, Severity, Transitions
from rules.i18n import translations
from rules.text import redact, truncate

# Room for the subject, links and the block's card wrapper inside Google Chat's 32,000 bytes.
MAX_BODY_CHARS = 12_000
MAX_ITEMS_PER_SECTION = 25
MAX_LISTED = 10  # offers or actions named in a message; the artifacts list all


def N_(text: str) -> str:  # noqa: N802 - gettext's name for "translate later"
    """Mark `text` for the catalogue without translating it here."""
    return text


SEVERITY = {Severity.INFO: N_("info"), Severity.WARNING: N_("warning"), Severity.CRITICAL: N_("critical")}
STATES = {name: name for name in (N_("Failed"), N_("Crashed"), N_("TimedOut"), N_("Late"), N_("Cancelled"),
                                  N_("Completed"))}
OUTCOMES = {name: name for name in (N_("done"), N_("failed"), N_("skipped"), N_("dry-run"))}


def _tr(language: str):
    t = translations(language)
    return t.gettext, t.ngettext


def money(value: float | None, language: str = "en") -> str:
    if value is None:
        return ""
    _ = _tr(language)[0]
    return _("{amount}/mo").format(amount=f"${value:,.2f}")


def state_label(state: str, language: str = "en") -> str:
    """A Prefect state name in `language` (unknown names as they are)."""
    _ = _tr(language)[0]
    return _(STATES[state]) if state in STATES else state


def _line(finding: Finding, language: str) -> str:
    _ = _tr(language)[0]
    where = f" ({finding.scope})" if finding.scope else ""
    cost = f" — {money(finding.monthly_cost_usd, language)}" if finding.monthly_cost_usd else ""
    return (f"• [{_(SEVERITY[finding.severity])}] {finding.kind} {finding.resource_id}{where}{cost}: "
            f"{finding.reason}")


def _section(title: str, lines: Sequence[str], language: str) -> list[str]:
    if not lines:
        return []
    _ = _tr(language)[0]
    shown = list(lines[:MAX_ITEMS_PER_SECTION])
    if len(lines) > len(shown):
        shown.append(_("… and {count} more (see the run's artifact)").format(count=len(lines) - len(shown)))
    return [_("{title} ({count}):").format(title=title, count=len(lines)), *shown, ""]


def findings_digest(
    job: str, transitions: Transitions, run_url: str | None = None, language: str = "en",
    planned: Sequence[str] = (),
) -> tuple[str, str]:
    """Subject and body of the one message a job run sends about its findings; `planned` are the
    changes a dry run would make (one line each), so a reader knows what `apply` would do."""
    _ = _tr(language)[0]
    parts = [
        (len(transitions.opened), _("{count} new")),
        (len(transitions.escalated), _("{count} escalated")),
        (len(transitions.reminded), _("{count} still open")),
        (len(transitions.resolved),
         _("{count} no longer reported") if transitions.policy_changes else _("{count} resolved")),
    ]
    subject = f"[{job}] " + ", ".join(text.format(count=n) for n, text in parts if n)
    body: list[str] = []
    body += _section(_("New"), [_line(f, language) for f in transitions.opened], language)
    body += _section(_("Escalated"), [_line(f, language) for f in transitions.escalated], language)
    body += _section(_("Still open (reminder)"), [_line(f, language) for f in transitions.reminded], language)
    resolved_title = (_("No longer reported: healed, or under a threshold the policy changed ({changes})").format(
        changes="; ".join(transitions.policy_changes)) if transitions.policy_changes else _("Resolved"))
    body += _section(resolved_title, [f"• {key.replace('|', ' ')}" for key in transitions.resolved], language)
    body += _section(_("Would change (dry run: with apply, each waits for approval)"),
                     [f"• {line}" for line in planned], language)
    money_open = sum(
        f.monthly_cost_usd or 0
        for f in (*transitions.to_announce, *transitions.still_open)
    )
    if money_open:
        body.append(_("Open findings cost {money} in total.").format(money=money(money_open, language)))
    if run_url:
        body.append(_("Run: {url}").format(url=run_url))
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
    language: str = "en",
) -> tuple[str, str]:
    """Subject and body for a failed, crashed or timed-out flow run.

    The subject starts with `[flow/deployment]` (or `[flow]`), which the chat block turns
    into one thread per deployment per day; `owners` are mentioned in the first line.
    """
    _ = _tr(language)[0]
    tag = f"{flow_name}/{deployment}" if deployment else flow_name
    state = state_label(state_name, language)
    if failure and failure.task_name:
        headline = _("run {run} {state} in task {task}").format(run=flow_run_name, state=state,
                                                               task=failure.task_name)
    else:
        headline = _("run {run} {state}").format(run=flow_run_name, state=state)
    if failure:
        headline += f": {failure.exception}"
    subject = truncate(f"[{tag}] {headline}", 200)
    body = [f"{mentions(owners)} " if owners else ""]
    body[0] += _("Flow {flow}, run {run}: {state}").format(flow=flow_name, run=flow_run_name, state=state)
    if deployment:
        body.append(_("Deployment: {deployment}").format(deployment=deployment))
    if failure and failure.task_name:
        body.append(_("Failed task: {task} ({task_run}), attempt {attempt} of {attempts}, {left} retries left")
                    .format(task=failure.task_name, task_run=failure.task_run_name, attempt=failure.attempts,
                            attempts=failure.max_attempts, left=failure.max_attempts - failure.attempts))
    if flow_attempt:
        body.append(_("Flow run attempt {attempt} of {attempts}, {left} retries left").format(
            attempt=flow_attempt[0], attempts=flow_attempt[1], left=max(0, flow_attempt[1] - flow_attempt[0])))
    if run_url:
        body.append(_("Run: {url}").format(url=run_url))
    body += ["", _("Error:"), truncate(state_message.strip(), 3_000)]
    if failure and failure.traceback_tail:
        body += ["", _("Traceback (last lines):"), truncate("\n".join(failure.traceback_tail), 3_000)]
    if parameters:
        shown = ", ".join(f"{k}={truncate(str(v), 200)}" for k, v in parameters.items())
        body += ["", _("Parameters: {parameters}").format(parameters=truncate(shown, 1_000))]
    if log_lines:
        tail = truncate("\n".join(log_lines), 6_000)
        body += ["", _("Last log lines:"), tail]
    return redact(subject, secrets), truncate(redact("\n".join(body), secrets), MAX_BODY_CHARS)


# --- approvals --------------------------------------------------------------------------


class Offered(Protocol):
    """What a message needs of one change offered for approval (`tasks.approval.Offer`)."""

    item_id: str
    scope: str
    action: str
    monthly_usd: float


def approval_waiting(job: str, offered: Sequence[Offered], timeout_seconds: int, link: str | None,
                     language: str = "en") -> tuple[str, str]:
    """A run paused for a person's approval: what it would change and where to approve."""
    _, ngettext = _tr(language)
    total = sum(o.monthly_usd for o in offered)
    lines = [ngettext("{count} change waits for approval ({money}); nothing changes unless someone "
                      "approves within {minutes} min.",
                      "{count} changes wait for approval ({money}); nothing changes unless someone "
                      "approves within {minutes} min.", len(offered)).format(
        count=len(offered), money=money(total, language), minutes=timeout_seconds // 60)]
    lines += [f"• {o.action} {o.item_id} ({o.scope}): {money(o.monthly_usd, language)}"
              for o in sorted(offered, key=lambda o: -o.monthly_usd)[:MAX_LISTED]]
    if len(offered) > MAX_LISTED:
        lines.append(_("… and {count} more in the plan artifact.").format(count=len(offered) - MAX_LISTED))
    lines.append(_("Approve in the Prefect UI: {link}").format(link=link) if link
                 else _("Approve in the Prefect UI (paused run)."))
    return f"[{job}] " + _("waiting for approval"), "\n".join(lines)


def approval_expired(job: str, timeout_seconds: int, language: str = "en") -> tuple[str, str]:
    _ = _tr(language)[0]
    return (f"[{job}] " + _("approval expired"),
            _("Nobody approved within {minutes} min: nothing was changed.").format(minutes=timeout_seconds // 60))


def actions_applied(job: str, rows: Sequence[Mapping[str, Any]], language: str = "en") -> tuple[str, str]:
    """What an approved apply did: counts per outcome, then each action."""
    _ = _tr(language)[0]

    def outcome(name: str) -> str:
        return _(OUTCOMES[name]) if name in OUTCOMES else name

    counts: dict[str, int] = {}
    for r in rows:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    lines = [", ".join(f"{n} {outcome(o)}" for o, n in sorted(counts.items()))]
    lines += [f"• {r['action']} {r['resource']}: {outcome(r['outcome'])}"
              + (f" ({r['detail']})" if r.get("detail") else "") for r in rows[:MAX_LISTED]]
    return f"[{job}] " + _("approved changes applied"), "\n".join(lines)


# --- automation templates and the chat block's notes -------------------------------------


def silent_deployment(full_name: str, window: str, owners: Sequence[str], language: str = "en") -> tuple[str, str]:
    """A deployment none of whose runs completed within `window` (a proactive automation)."""
    _ = _tr(language)[0]
    who = mentions(owners)
    return (f"[{full_name}] " + _("silent: no completed run in {window}").format(window=window),
            (who + " " if who else "") + _(
                "No run of deployment {deployment} completed in the last {window}: check its schedule, "
                "work pool and workers, and its last runs in the Prefect UI.").format(
                deployment=full_name, window=window))


def crashed_templates(language: str = "en") -> tuple[str, str]:
    """Jinja subject and body for Prefect's own Crashed event (its process died before our hook)."""
    _ = _tr(language)[0]
    subject = ("[{{ flow.name }}{% if deployment %}/{{ deployment.name }}{% endif %}] "
               + _("run {run} {state}").format(run="{{ flow_run.name }}", state=state_label("Crashed", language)))
    body = ("{% for tag in flow_run.tags %}{% if tag.startswith('owner:') %}"
            "<users/{{ tag[6:].replace('users/', '') }}> {% endif %}{% endfor %}"
            + _("Flow {flow}, run {run}: {state}").format(
                flow="{{ flow.name }}", run="{{ flow_run.name }}", state=state_label("Crashed", language)) + "\n"
            "{% if deployment %}" + _("Deployment: {deployment}").format(deployment="{{ deployment.name }}")
            + "\n{% endif %}" + _("Run: {url}").format(url="{{ flow_run|ui_url }}") + "\n\n"
            + _("Error:") + "\n{{ flow_run.state.message }}")
    return subject, body


def refused_earlier_note(subject: str, error: str, language: str = "en") -> str:
    _ = _tr(language)[0]
    return _("⚠ Google Chat refused an earlier message, kept in the outbox: {subject} — {error}").format(
        subject=subject or _("(no subject)"), error=error)


def store_down_note(store: str, language: str = "en") -> str:
    _ = _tr(language)[0]
    return _("⚠ The ops store {store} is down: the outbox is skipped, and runs that need the store fail "
             "until it is back.").format(store=store)


def truncated_note(dropped: int, language: str = "en") -> str:
    _ = _tr(language)[0]
    return _("… (truncated {count} characters to fit Google Chat's limit)").format(count=f"{dropped:,}")
