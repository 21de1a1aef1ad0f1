"""The one approval path: a chat message says a run waits, nothing is pre-selected, a person
picks; nobody answering approves nothing."""

from prefect import flow

from tasks.approval import ApprovalExpired, Offer, approval_form, ask_approval, cancelled
from tests.approvals import run_and_answer

OFFERS = [Offer("vol-1", "111/us-east-1", "delete-volume", 8.0, "idle 40 days"),
          Offer("vol-2", "111/us-east-1", "delete-volume", 12.5, "idle 90 days")]


@flow(name="approval-probe")
def ask(timeout_seconds: int = 300):
    try:  # as the runner does
        return [o.item_id for o in ask_approval("approval-probe", OFFERS, timeout_seconds)]
    except ApprovalExpired as exc:
        return cancelled(str(exc))


def test_form_preselects_nothing():
    form = approval_form("job", OFFERS)
    assert form().approved == [] and form().approve_all is False


def test_waiting_message_reaches_chat_and_only_the_pick_is_approved(routed):
    state = run_and_answer(ask, {"approved": ["vol-2"]})
    assert state.result() == ["vol-2"]
    [waiting] = [m for m in routed.wait_for(1, timeout=30) if "waiting for approval" in m.text]
    assert "2 changes wait for approval ($20.50/mo)" in waiting.text
    assert "/runs/flow-run/" in waiting.text  # the link to approve in the UI


def test_resume_with_nothing_selected_approves_nothing():
    assert run_and_answer(ask, {}).result() == []


def test_nobody_answering_approves_nothing():
    state = ask(timeout_seconds=10, return_state=True)
    assert state.is_cancelled() and "nothing was changed" in state.message
