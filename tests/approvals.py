"""Answering a paused run as a person would: wait for Paused on the real server, then resume."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import resume_flow_run


def paused_run_id(flow_name: str, after: datetime, timeout: float = 120,
                  finished: threading.Thread | None = None) -> str | None:
    """The id of this flow's run that paused after `after` (read from the Prefect API); None
    when `finished` ends first (the run needed no approval)."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            if finished is not None and not finished.is_alive():
                return None
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.PAUSED]))),
            )
            runs = [r for r in runs if r.created and r.created >= after]
            if runs:
                return str(runs[0].id)
            time.sleep(0.5)
    raise AssertionError(f"no run of {flow_name} paused")


def run_and_answer(flow: Flow, answer: dict[str, Any], must_pause: bool = True, **kwargs: Any) -> Any:
    """Run `flow` in a thread; when it pauses for approval, resume it with `answer`.

    `must_pause=False` accepts a run that needs no approval (a standing one). Returns the
    final state (the run's result is `state.result()`).
    """
    box: dict[str, Any] = {}
    started = datetime.now(timezone.utc) - timedelta(seconds=1)
    thread = threading.Thread(target=lambda: box.setdefault("state", flow(return_state=True, **kwargs)))
    thread.start()
    run_id = paused_run_id(flow.name, started, finished=None if must_pause else thread)
    if run_id:
        resume_flow_run(run_id, run_input=answer)
    thread.join(180)
    return box["state"]
