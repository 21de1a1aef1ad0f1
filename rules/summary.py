"""What a job's summary artifact says: the total, where it comes from (by kind and by scope),
the five costliest items and what to do about them, links to the run's plan or approval, and
what the run could not cover. Pure: tasks/report.py publishes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from rules import compute_sizing, graviton, tiering
from rules.findings import Finding, Transitions
from rules.idle import IDLE_EIP, ORPHANED_SNAPSHOT, STALE_OBJECTS, UNATTACHED_VOLUME
from rules.messages import money
from rules.text import redact

TOP_ITEMS = 5
# A breakdown longer than this is noise in a summary; the findings table has every row.
MAX_BREAKDOWN_ROWS = 10

# What to do about each kind of finding that costs money. Other kinds are about health, not
# money, and their reason already says what is wrong.
ADVICE: dict[str, str] = {
    IDLE_EIP: "release the address (`apply=true` plans it and asks for approval)",
    UNATTACHED_VOLUME: "snapshot it, then delete the volume (`apply=true` plans it and asks)",
    ORPHANED_SNAPSHOT: "delete the snapshot, its volume is gone (`apply=true` plans it and asks)",
    STALE_OBJECTS: "expire the old objects with a lifecycle rule (`apply=true` plans it and asks)",
    "ebs-gp2-to-gp3": "change the type to gp3, online (`apply=true` asks for approval)",
    "ebs-lower-iops": "lower the provisioned IOPS, online (`apply=true` asks for approval)",
    "ebs-near-idle": "ask its owner; detach and delete it if nobody uses it",
    "ebs-shrink-candidate": "copy the data to a smaller volume (see the shrink-plan artifact)",
    compute_sizing.IDLE_INSTANCE: "stop the instance (`apply=true` plans it and asks for approval)",
    compute_sizing.DOWNSIZE_INSTANCE: "change the instance type to the named smaller size (a stop and start)",
    compute_sizing.IDLE_DATABASE: "stop it (`apply=true` asks), or snapshot it and delete it",
    compute_sizing.LOW_CPU_REDSHIFT: "add a pause/resume schedule, or resize to fewer nodes",
    compute_sizing.SERVERLESS_INSTANCE: "run the work as a Fargate task started on demand or on a schedule, then retire the instance",
    compute_sizing.AURORA_SERVERLESS: "move to Aurora Serverless v2 (snapshot restore or Aurora read replica), then retire the instance",
    graviton.KIND: "move to the Graviton twin once the workload has an arm64 build",
    tiering.KIND: "add the Intelligent-Tiering lifecycle rule (`apply=true` asks for approval)",
}
# Kinds whose action `apply=true` skips for a resource carrying the opt-out tag.
KEPT_BY_TAG = {IDLE_EIP, UNATTACHED_VOLUME, ORPHANED_SNAPSHOT, STALE_OBJECTS, "ebs-gp2-to-gp3",
               "ebs-lower-iops", tiering.KIND, compute_sizing.IDLE_INSTANCE, compute_sizing.IDLE_DATABASE}
KEEP_HINT = f"Anything that must stay: tag it `{tiering.KEEP_TAG}` and `apply=true` leaves it alone."


@dataclass(frozen=True)
class Link:
    """Something of this run a reader may want next, e.g. the plan artifact."""

    label: str
    url: str


def _cost(f: Finding) -> float:
    return f.monthly_cost_usd or 0.0


def _row(name: str, group: Sequence[Finding]) -> str:
    usd = sum(map(_cost, group))
    return f"| {name.replace('|', '&#124;')} | {len(group)} | {money(usd) if usd else '-'} |"


def _breakdown(column: str, findings: Sequence[Finding], key: Callable[[Finding], str]) -> list[str]:
    """Count and $/month per value of `key`, the most expensive first."""
    groups: dict[str, list[Finding]] = {}
    for f in findings:
        groups.setdefault(key(f) or "-", []).append(f)
    rows = sorted(groups.items(), key=lambda kv: (-sum(map(_cost, kv[1])), -len(kv[1]), kv[0]))
    lines = ["", f"## By {column}", "", f"| {column} | findings | $/month |", "| --- | ---: | ---: |"]
    lines += [_row(name, group) for name, group in rows[:MAX_BREAKDOWN_ROWS]]
    if len(rows) > MAX_BREAKDOWN_ROWS:
        rest = [f for _, group in rows[MAX_BREAKDOWN_ROWS:] for f in group]
        lines.append(_row(f"{len(rows) - MAX_BREAKDOWN_ROWS} more", rest))
    return lines


def _top(findings: Sequence[Finding]) -> list[str]:
    costed = any(_cost(f) for f in findings)
    top = sorted(findings, key=lambda f: (-_cost(f), -f.severity.rank, f.kind, f.resource_id))[:TOP_ITEMS]
    lines = ["", f"## {'Costliest' if costed else 'First'} {len(top)}", ""]
    for i, f in enumerate(top, 1):
        where = f" ({f.scope})" if f.scope else ""
        cost = f", {money(f.monthly_cost_usd)}" if f.monthly_cost_usd else ""
        advice = ADVICE.get(f.kind)
        # A trailing backslash is a line break in markdown: the advice gets its own line.
        lines.append(f"{i}. **{f.resource_id}**{where}{cost}: {redact(f.reason)}" + ("\\" if advice else ""))
        if advice:
            lines.append(f"   **To do:** {advice}.")
    if any(f.kind in KEPT_BY_TAG for f in top):
        lines += ["", KEEP_HINT]
    return lines


def summary_markdown(
    job: str,
    findings: Sequence[Finding],
    transitions: Transitions | None = None,
    errors: Mapping[str, str] | None = None,
    notes: Sequence[str] = (),
    links: Sequence[Link] = (),
    table_note: str | None = None,
) -> str:
    """The markdown of a job run's summary artifact.

    `errors` maps a scope the run could not cover to why; `links` point at this run's plan,
    actions or approval; `table_note` says how the findings table was cut, if it was.
    """
    total = sum(map(_cost, findings))
    headline = f"**{len(findings)} findings**" + (f", {money(total)} in total" if total else "")
    lines = [f"# {job}", "", headline]
    if transitions is not None:
        lines += ["", f"New {len(transitions.opened)}, escalated {len(transitions.escalated)}, "
                      f"reminded {len(transitions.reminded)}, resolved {len(transitions.resolved)}."]
    if table_note:
        lines += ["", table_note]
    if links:
        lines += [""] + [f"- [{link.label}]({link.url})" for link in links]
    if findings:
        lines += _top(findings)
        lines += _breakdown("kind", findings, lambda f: f.kind)
        lines += _breakdown("account/region", findings, lambda f: f.scope)
    if notes:
        lines += ["", "## Notes", ""] + [f"- {redact(n)}" for n in notes]
    if errors:
        lines += ["", "## Not covered this run", ""]
        lines += [f"- **{scope}**: {redact(msg)}" for scope, msg in sorted(errors.items())]
    return "\n".join(lines)
