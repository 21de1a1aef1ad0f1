"""The summary artifact's text (rules/summary.py), without I/O: totals, breakdowns, the costliest
five with what to do, links, notes and gaps."""

from __future__ import annotations

import re

from rules import graviton
from rules.findings import Finding, Severity, Transitions
from rules.idle import IDLE_EIP, ORPHANED_SNAPSHOT, UNATTACHED_VOLUME
from rules.summary import ADVICE, KEEP_HINT, TOP_ITEMS, Link, summary_markdown


def _finding(kind: str, rid: str, scope: str, usd: float | None, severity=Severity.WARNING) -> Finding:
    return Finding(kind=kind, resource_id=rid, scope=scope, reason=f"{rid} is idle", monthly_cost_usd=usd,
                   severity=severity)


FINDINGS = [
    *[_finding(IDLE_EIP, f"eipalloc-{i}", "111111111111/us-east-1", 3.65) for i in range(4)],
    _finding(UNATTACHED_VOLUME, "vol-big", "111111111111/eu-west-1", 631.2),
    _finding(UNATTACHED_VOLUME, "vol-small", "222222222222/us-east-1", 8.0),
    _finding(ORPHANED_SNAPSHOT, "snap-1", "222222222222/us-east-1", 5.0, Severity.CRITICAL),
]


def _section(markdown: str, title: str) -> list[str]:
    body = markdown.split(f"## {title}\n\n", 1)[1]
    return body.split("\n\n", 1)[0].splitlines()


def _table(markdown: str, title: str) -> dict[str, tuple[int, str]]:
    rows = [r.strip("|").split("|") for r in _section(markdown, title)[2:]]
    return {name.strip(): (int(count), usd.strip()) for name, count, usd in rows}


def test_total_breakdowns_and_costliest_five_with_advice():
    md = summary_markdown("idle-resources", FINDINGS, Transitions(opened=FINDINGS))

    total = sum(f.monthly_cost_usd for f in FINDINGS)
    assert f"**{len(FINDINGS)} findings**, ${total:,.2f}/mo in total" in md
    assert "New 7, escalated 0, reminded 0, resolved 0." in md
    assert _table(md, "By kind") == {
        UNATTACHED_VOLUME: (2, "$639.20/mo"), IDLE_EIP: (4, "$14.60/mo"), ORPHANED_SNAPSHOT: (1, "$5.00/mo")}
    assert _table(md, "By account/region") == {
        "111111111111/eu-west-1": (1, "$631.20/mo"), "111111111111/us-east-1": (4, "$14.60/mo"),
        "222222222222/us-east-1": (2, "$13.00/mo")}
    # The costliest first, whatever their severity; each with what to do about its kind.
    items = [line for line in _section(md, f"Costliest {TOP_ITEMS}") if re.match(r"\d+\. ", line)]
    assert [re.search(r"\*\*(\S+)\*\*", i).group(1) for i in items] == [
        "vol-big", "vol-small", "snap-1", "eipalloc-0", "eipalloc-1"]
    assert items[0] == "1. **vol-big** (111111111111/eu-west-1), $631.20/mo: vol-big is idle\\"
    assert f"   **To do:** {ADVICE[UNATTACHED_VOLUME]}." in md and f"   **To do:** {ADVICE[IDLE_EIP]}." in md
    assert KEEP_HINT in md


def test_findings_without_money_are_listed_by_severity_without_advice():
    health = [_finding("lambda-errors", "etl-a", "us-east-1", None),
              _finding("lambda-timeouts", "etl-b", "us-east-1", None, Severity.CRITICAL)]
    md = summary_markdown("lambda-health", health)
    assert "in total" not in md and "To do" not in md and KEEP_HINT not in md
    # Advice alone does not promise the opt-out tag: graviton-advisor only advises.
    advice_only = summary_markdown("graviton-advisor", [_finding(graviton.KIND, "i-1", "us-east-1/ec2", 9.0)])
    assert f"**To do:** {ADVICE[graviton.KIND]}." in advice_only and KEEP_HINT not in advice_only
    assert _section(md, "First 2")[:2] == ["1. **etl-b** (us-east-1): etl-b is idle",
                                           "2. **etl-a** (us-east-1): etl-a is idle"]
    assert _table(md, "By kind") == {"lambda-errors": (1, "-"), "lambda-timeouts": (1, "-")}


def test_long_breakdowns_are_cut_with_the_rest_summed():
    many = [_finding("k", f"r-{i}", f"scope-{i:02d}", float(i + 1)) for i in range(15)]
    rows = _table(summary_markdown("job", many), "By account/region")
    assert len(rows) == 11 and rows["scope-14"] == (1, "$15.00/mo")
    assert rows["5 more"] == (5, f"${sum(range(1, 6)):,.2f}/mo")


def test_links_notes_gaps_and_no_findings():
    md = summary_markdown(
        "ebs-rightsizing", [], errors={"eu-west-1": "AccessDenied", "us-east-1": "timeout"},
        notes=["secret=hunter2 in a note"],
        links=[Link("plan of 3 actions", "http://ui.test/artifacts/key/ebs-rightsizing-plan")],
        table_note="The table shows the first 1,000 of 1,001 findings.")
    assert "**0 findings**" in md and "## By kind" not in md and "Costliest" not in md
    assert "- [plan of 3 actions](http://ui.test/artifacts/key/ebs-rightsizing-plan)" in md
    assert "The table shows the first 1,000 of 1,001 findings." in md
    assert _section(md, "Not covered this run") == ["- **eu-west-1**: AccessDenied", "- **us-east-1**: timeout"]
    assert "hunter2" not in md
