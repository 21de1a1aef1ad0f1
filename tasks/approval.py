"""The one approval path: every change a job offers goes through it before anything changes.

The plan artifact is written first; Google Chat is told that the run waits (what it would
change, what it saves, the run link); the run pauses with a form where nothing is selected;
only what a person picks is approved. Nobody answering before the timeout approves nothing,
and the run ends Cancelled saying so. The outcome goes to chat as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run as runtime_flow_run
from prefect.states import Cancelled, Cancelling, State
from pydantic import Field, create_model

from rules.messages import money
from tasks.notify import emit_job_message, run_url

APPROVAL_POLL_SECONDS = 2
MAX_LISTED = 10  # offers named in the chat message; the plan artifact lists all


@dataclass(frozen=True)
class Offer:
    """One change a job proposes; `item_id` is what a person approves."""

    item_id: str
    scope: str  # the target (account/region) it is applied in
    action: str
    monthly_usd: float
    detail: str
    eligible: bool = True  # False: listed in the plan but not offered (grace period, opt-out)
    payload: Any = None  # what the job's apply needs

    def row(self) -> dict[str, Any]:
        return {"approve_id": self.item_id, "action": self.action, "scope": self.scope,
                "monthly_usd": round(self.monthly_usd, 2), "eligible": self.eligible,
                "detail": self.detail}


class ApprovalExpired(Exception):
    """Nobody approved in time: nothing was changed."""


def approval_form(job: str, offered: Sequence[Offer]) -> type[RunInput]:
    """The form a person fills in to resume: nothing is pre-selected."""
    choices = Literal[tuple(o.item_id for o in offered)]  # type: ignore[valid-type]
    form = create_model(
        "Approval",
        __base__=RunInput,
        approved=(list[choices], Field(default_factory=list,
                                       description="Ids to act on (see the plan artifact).")),
        approve_all=(bool, Field(default=False, description="Act on every offered item.")),
    )
    total = sum(o.monthly_usd for o in offered)
    return form.with_initial_data(description=(
        f"**{len(offered)} changes, {money(total)}** offered by {job}. Pick the ones to "
        f"act on; the `{job}-plan` artifact lists each with its cost."))


def waiting_message(job: str, offered: Sequence[Offer], timeout_seconds: int, link: str | None) -> str:
    total = sum(o.monthly_usd for o in offered)
    lines = [f"{len(offered)} changes wait for approval ({money(total)}); nothing changes "
             f"unless someone approves within {timeout_seconds // 60} min."]
    lines += [f"• {o.action} {o.item_id} ({o.scope}): {money(o.monthly_usd)}"
              for o in sorted(offered, key=lambda o: -o.monthly_usd)[:MAX_LISTED]]
    if len(offered) > MAX_LISTED:
        lines.append(f"… and {len(offered) - MAX_LISTED} more in the plan artifact.")
    lines.append(f"Approve in the Prefect UI: {link}" if link else "Approve in the Prefect UI (paused run).")
    return "\n".join(lines)


def ask_approval(job: str, offered: Sequence[Offer], timeout_seconds: int) -> list[Offer]:
    """Pause until a person picks offers; raises `ApprovalExpired` when nobody answers."""
    if not offered:
        return []
    emit_job_message(job, f"[{job}] waiting for approval",
                     waiting_message(job, offered, timeout_seconds, run_url()))
    try:
        answer = pause_flow_run(wait_for_input=approval_form(job, offered), timeout=timeout_seconds,
                                poll_interval=APPROVAL_POLL_SECONDS)
    except FlowPauseTimeout:
        get_run_logger().warning("nobody approved within %s s: nothing is applied", timeout_seconds)
        emit_job_message(job, f"[{job}] approval expired",
                         f"Nobody approved within {timeout_seconds // 60} min: nothing was changed.")
        raise ApprovalExpired(f"Nobody approved the plan within {timeout_seconds} s: nothing was changed.") from None
    chosen = set(answer.approved)
    return [o for o in offered if answer.approve_all or o.item_id in chosen]


def outcome_message(job: str, rows: Sequence[dict[str, Any]]) -> None:
    """Tell chat what an approved apply did."""
    if not rows:
        return
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    lines = [", ".join(f"{n} {o}" for o, n in sorted(counts.items()))]
    lines += [f"• {r['action']} {r['resource']}: {r['outcome']}" + (f" ({r['detail']})" if r.get("detail") else "")
              for r in rows[:MAX_LISTED]]
    emit_job_message(job, f"[{job}] approved changes applied", "\n".join(lines))


def cancelled(message: str) -> State:
    """End the run Cancelled. The server turns an expired pause into Failed unless the run goes
    through Cancelling first, which is what a person cancelling it in the UI would do."""
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(runtime_flow_run.id, Cancelling(message=message), force=True)
    return Cancelled(message=message)
