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

from rules.i18n import in_every_language
from rules.messages import actions_applied, approval_expired, approval_waiting, money
from tasks.notify import emit_job_message, run_url

APPROVAL_POLL_SECONDS = 2


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


def ask_approval(job: str, offered: Sequence[Offer], timeout_seconds: int) -> list[Offer]:
    """Pause until a person picks offers; raises `ApprovalExpired` when nobody answers."""
    if not offered:
        return []
    link = run_url()
    emit_job_message(job, in_every_language(
        lambda lang: approval_waiting(job, offered, timeout_seconds, link, lang)))
    try:
        answer = pause_flow_run(wait_for_input=approval_form(job, offered), timeout=timeout_seconds,
                                poll_interval=APPROVAL_POLL_SECONDS)
    except FlowPauseTimeout:
        get_run_logger().warning("nobody approved within %s s: nothing is applied", timeout_seconds)
        emit_job_message(job, in_every_language(lambda lang: approval_expired(job, timeout_seconds, lang)))
        raise ApprovalExpired(f"Nobody approved the plan within {timeout_seconds} s: nothing was changed.") from None
    chosen = set(answer.approved)
    return [o for o in offered if answer.approve_all or o.item_id in chosen]


def outcome_message(job: str, rows: Sequence[dict[str, Any]]) -> None:
    """Tell chat what an approved apply did."""
    if rows:
        emit_job_message(job, in_every_language(lambda lang: actions_applied(job, rows, lang)))


def cancelled(message: str) -> State:
    """End the run Cancelled. The server turns an expired pause into Failed unless the run goes
    through Cancelling first, which is what a person cancelling it in the UI would do."""
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(runtime_flow_run.id, Cancelling(message=message), force=True)
    return Cancelled(message=message)
