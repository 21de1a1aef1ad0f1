"""Approval of planned changes: from the `approved` parameter, or by pausing the run for a person.

A paused run shows a form in the Prefect UI listing the planned change IDs; whoever resumes it
keeps the IDs they approve. Nobody answering before the timeout approves nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from prefect import get_run_logger
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field


class Approval(RunInput):
    approved: list[str] = Field(default_factory=list, description="IDs of the planned changes to apply.")


def approved_ids(planned: Sequence[str], approved: Sequence[str] | None, timeout_seconds: int = 3600) -> set[str]:
    """The planned IDs a person approved. `approved=None` pauses the flow run and asks."""
    if not planned:
        return set()
    if approved is None:
        form = Approval.with_initial_data(
            description="Approve the changes to apply (see the run's plan artifact); remove any you do not want.",
            approved=list(planned))
        try:
            answer = pause_flow_run(wait_for_input=form, timeout=timeout_seconds)
        except FlowPauseTimeout:
            get_run_logger().warning("nobody approved within %s s: nothing is applied", timeout_seconds)
            return set()
        approved = answer.approved
    return set(planned) & set(approved)
