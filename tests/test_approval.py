"""The approval step: explicit IDs, and a paused run resumed by a person with their choice."""

import threading
import time

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.flow_runs import resume_flow_run
from prefect.runtime import flow_run

from tasks.approval import approved_ids


def test_explicit_approval_keeps_only_planned_ids():
    assert approved_ids(["vol-1", "vol-2"], ["vol-2", "vol-9"]) == {"vol-2"}
    assert approved_ids([], None) == set()  # nothing planned: never pauses


SEEN: dict[str, str] = {}  # the probe's flow run id, read by the test thread


@flow(name="approval-probe")
def ask() -> set[str]:
    SEEN["id"] = flow_run.id
    return approved_ids(["vol-1", "vol-2"], None, timeout_seconds=300)


def test_paused_run_applies_what_the_person_approved():
    holder, result = SEEN, {}
    worker = threading.Thread(target=lambda: result.setdefault("ids", ask()))
    worker.start()
    deadline = time.monotonic() + 240
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            if "id" in holder and client.read_flow_run(holder["id"]).state.is_paused():
                break
            time.sleep(0.5)
    resume_flow_run(holder["id"], run_input={"approved": ["vol-2"]})
    worker.join(timeout=240)
    assert result["ids"] == {"vol-2"}
