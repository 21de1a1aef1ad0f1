"""The one way this collection emits events; automations turn them into chat messages.

- `emit_findings_digest`: one event per job run that changed something (opened, escalated,
  reminded, resolved findings), carrying the rendered subject and text.
- `emit_chat_refused`: Google Chat refused a message for good (the chat block emits it).
- `on_flow_failure`: a flow hook that emits one event per failed (or timed-out) run with
  the failed task, its exception and traceback tail, retries, the owners to mention and
  the last log lines, which Prefect's open-source server cannot template.
- `emit_flow_failure`: that event; `flows/pipeline_failure_report.py` emits it too, for runs
  of flows without the hook, so one automation routes both and the event marks a run as
  announced.
- `messages_of`: the messages a flow run of this process emitted (the command line prints them).

Owners come from the run's tags (a deployment's tags are its runs' tags): `owner:<chat
user id>` or `owner:all`.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from prefect.events import emit_event
from prefect.runtime import deployment as runtime_deployment
from prefect.runtime import flow_run as runtime_flow_run
from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

from rules.config import Explained
from rules.findings import Transitions
from rules.i18n import in_every_language
from rules.messages import TaskFailure, findings_digest, flow_failure_message
from rules.text import redact

if TYPE_CHECKING:  # the chat block imports this module
    from blocks.store import OpsStore

EVENT_FINDINGS = "dataplatform-ops.findings.changed"
EVENT_FLOW_FAILED = "dataplatform-ops.flow-run.failed"
EVENT_CHAT_REFUSED = "dataplatform-ops.chat.refused"
LOG_TAIL_RECORDS = 15
TRACEBACK_LINES = 8
OWNER_TAG_PREFIX = "owner:"
_RETRY = re.compile(r" - Retry (\d+)/(\d+) will start")
_SECRET_PARAM_WORDS = ("password", "secret", "token", "key", "credential", "url", "dsn")


_SENT: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()  # flow run id -> message payloads
_SENT_LOCK = threading.Lock()
_SENT_RUNS = 64


def _remember(flow_run_id: Any, payload: dict[str, Any]) -> None:
    if not flow_run_id:
        return
    with _SENT_LOCK:
        _SENT.setdefault(str(flow_run_id), []).append(payload)
        _SENT.move_to_end(str(flow_run_id))
        while len(_SENT) > _SENT_RUNS:
            _SENT.popitem(last=False)


def messages_of(flow_run_id: Any) -> list[dict[str, Any]]:
    """The message payloads (`subject`, `text`, ...) a flow run in this process emitted, in order."""
    with _SENT_LOCK:
        return list(_SENT.get(str(flow_run_id), ()))


def run_url(flow_run_id: Any = None) -> str | None:
    """Link to a flow run in the Prefect UI (needs PREFECT_UI_URL), or None."""
    flow_run_id = flow_run_id or runtime_flow_run.id
    ui = PREFECT_UI_URL.value()
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui and flow_run_id else None


def message_fields(messages: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    """An event's message in every language: `subject` and `text` in English, the others under
    `i18n.<language>` (the automation for a chat block in that language sends those)."""
    fields: dict[str, Any] = {"subject": redact(messages["en"][0]), "text": redact(messages["en"][1])}
    fields["i18n"] = {lang: {"subject": redact(subject), "text": redact(text)}
                      for lang, (subject, text) in messages.items() if lang != "en"}
    return fields


def emit_findings_digest(job: str, transitions: Transitions, store: OpsStore | None = None,
                         planned: Sequence[str] = ()) -> bool:
    """Emit the digest event if anything changed; returns whether one was emitted.

    With `store`, the digest is recorded first (in each language), so that a chat block whose
    outbox is that store can make the findings due again if Google Chat refuses it.
    """
    if transitions.is_quiet:
        return False
    link = run_url()
    messages = in_every_language(lambda lang: findings_digest(job, transitions, link, lang, planned))
    if store is not None:
        for subject, text in messages.values():
            store.record_announcement(job, subject, text, transitions, datetime.now(timezone.utc))
    worst = max(
        (f.severity.rank for f in transitions.opened + transitions.escalated + transitions.reminded),
        default=0,
    )
    payload = {
        "job": job,
        **message_fields(messages),
        "worst_severity_rank": worst,
        "opened": [f.key for f in transitions.opened][:200],
        "escalated": [f.key for f in transitions.escalated][:200],
        "reminded": [f.key for f in transitions.reminded][:200],
        "resolved": transitions.resolved[:200],
    }
    emit_event(
        event=EVENT_FINDINGS,
        resource={"prefect.resource.id": f"dataplatform-ops.job.{job}", "prefect.resource.name": job},
        payload=payload,
    )
    _remember(runtime_flow_run.id, payload)
    return True


def emit_job_message(job: str, messages: Mapping[str, tuple[str, str]]) -> None:
    """A message from a job that is not a findings digest (an approval waiting, its outcome), in
    every language; it takes the digest's route to chat, threaded with the job's other messages."""
    payload = {"job": job, **message_fields(messages)}
    emit_event(
        event=EVENT_FINDINGS,
        resource={"prefect.resource.id": f"dataplatform-ops.job.{job}", "prefect.resource.name": job},
        payload=payload,
    )
    _remember(runtime_flow_run.id, payload)


def _refusal(subject: str, error: str) -> dict[str, Any]:
    return {
        "event": EVENT_CHAT_REFUSED,
        "resource": {"prefect.resource.id": "dataplatform-ops.chat",
                     "prefect.resource.name": "Google Chat"},
        "payload": {"subject": redact(subject), "error": redact(error)},
    }


def emit_chat_refused(refusals: Sequence[tuple[str, str]]) -> None:
    """One event per message Google Chat will never take (subject, error): kept in the outbox."""
    for subject, error in refusals:
        emit_event(**_refusal(subject, error))


async def aemit_chat_refused(refusals: Sequence[tuple[str, str]]) -> None:
    """`emit_chat_refused` for the chat block's async twin, which a Prefect server runs.

    A server process usually has no API URL, and Prefect's client would then start a second,
    ephemeral server: there the event goes straight onto the server's own event bus.
    """
    if PREFECT_API_URL.value() or not refusals:
        emit_chat_refused(refusals)
        return
    from prefect.server.events.clients import PrefectServerEventsClient
    from prefect.server.events.schemas.events import Event

    try:
        async with PrefectServerEventsClient() as events:
            for subject, error in refusals:
                await events.emit(Event(id=uuid4(), occurred=datetime.now(timezone.utc),
                                        **_refusal(subject, error)))
    except Exception:  # an exception here would make the server retry the whole notification
        logging.getLogger(__name__).exception("could not emit %s", EVENT_CHAT_REFUSED)


def emit_outbox_flush(job: str) -> None:
    """An empty digest: the chat block then only delivers messages waiting in its outbox."""
    emit_event(
        event=EVENT_FINDINGS,
        resource={"prefect.resource.id": f"dataplatform-ops.job.{job}", "prefect.resource.name": job},
        payload={"job": job, "subject": "", "text": ""},
    )


class _LogTail(logging.Handler):
    """Keeps the last records logged by each flow run in this process (tasks included), and
    the last exception logged with its traceback (Prefect logs a failed task's at ERROR).

    A traceback is cut to its last lines, so one exception cannot push out the log lines
    that explain it.
    """

    def __init__(self, records: int = 100, runs: int = 64, traceback_lines: int = 6) -> None:
        super().__init__(level=logging.INFO)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s - %(message)s"))
        self._records, self._runs, self._tb = records, runs, traceback_lines
        self._tails: OrderedDict[str, deque[list[str]]] = OrderedDict()
        self._failures: OrderedDict[str, TaskFailure] = OrderedDict()
        self._retries: OrderedDict[str, tuple[int, int]] = OrderedDict()  # task run -> (used, allowed)
        self._lock = threading.Lock()

    def _note_failure(self, run_id: str, record: logging.LogRecord) -> None:
        """Remember a task's retry announcements and a run's last logged exception."""
        task_run = str(getattr(record, "task_run_id", "") or "")
        retry = _RETRY.search(record.getMessage()) if task_run else None
        if retry:
            self._retries[task_run] = (int(retry.group(1)), int(retry.group(2)))
            self._bound(self._retries)
        exc = record.exc_info[1] if record.exc_info else getattr(record, "explained", None)
        if record.levelno < logging.ERROR or exc is None:
            return
        summary = f"{type(exc).__name__}: {exc}"
        task_name = getattr(record, "task_name", None)
        known = self._failures.get(run_id)
        if not task_name and known and known.task_name and known.exception == summary:
            return  # the flow re-raising its task's exception: the task's record says more
        used, allowed = self._retries.pop(task_run, (0, 0))
        lines = [] if isinstance(exc, Explained) else "".join(traceback.format_exception(exc)).rstrip().splitlines()
        self._failures[run_id] = TaskFailure(
            task_name=task_name,
            task_run_name=getattr(record, "task_run_name", None),
            exception=summary,
            traceback_tail=tuple(lines[-TRACEBACK_LINES:]),
            attempts=used + 1,
            max_attempts=allowed + 1 if allowed else used + 1,
        )
        self._failures.move_to_end(run_id)
        self._bound(self._failures)

    def _bound(self, mapping: OrderedDict) -> None:
        while len(mapping) > self._runs * 4:
            mapping.popitem(last=False)

    def emit(self, record: logging.LogRecord) -> None:
        run_id = getattr(record, "flow_run_id", None)
        if not run_id:
            return
        try:
            fmt = self.formatter or logging.Formatter()
            lines = [f"{fmt.formatTime(record, '%H:%M:%S')} {record.levelname} {record.getMessage()}"]
            if record.exc_info:
                lines += ["  " + ln for ln in fmt.formatException(record.exc_info).splitlines()[-self._tb:]]
        except Exception:  # a bad log call must not break the run
            return
        with self._lock:
            try:
                self._note_failure(str(run_id), record)
            except Exception:  # a bad log call must not break the run
                pass
            tail = self._tails.setdefault(str(run_id), deque(maxlen=self._records))
            self._tails.move_to_end(str(run_id))
            tail.append(lines)
            while len(self._tails) > self._runs:
                self._tails.popitem(last=False)

    def tail(self, run_id: Any, records: int) -> list[str]:
        """The last `records` log records of a run, as lines."""
        with self._lock:
            chosen = list(self._tails.get(str(run_id), ()))[-records:]
        return [line for lines in chosen for line in lines]

    def failure(self, run_id: Any) -> TaskFailure | None:
        """The exception that failed a run (the task's, when a task raised it), if one was logged."""
        with self._lock:
            return self._failures.get(str(run_id))


class _OneLine(logging.Filter):
    """An `Explained` error (bad input, nothing read, no answer) is one line in a run's log, where
    Prefect would print its traceback: the traceback goes to the debug log instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, Explained) and not getattr(record, "explained", None):
            record.explained = exc  # what `_LogTail` notes as the run's failure
            record.exc_info = record.exc_text = None
            logger = logging.getLogger(record.name)
            if logger.isEnabledFor(logging.DEBUG):
                ids = {k: getattr(record, k) for k in ("flow_run_id", "task_run_id") if hasattr(record, k)}
                logger.debug("traceback of: %s", exc, exc_info=exc, extra={**ids, "explained": exc})
        return True


_LOG_TAIL = _LogTail()
for _name in ("prefect.flow_runs", "prefect.task_runs"):
    _logger = logging.getLogger(_name)
    if _LOG_TAIL not in _logger.handlers:
        _logger.addHandler(_LOG_TAIL)
    if not any(isinstance(f, _OneLine) for f in _logger.filters):
        _logger.addFilter(_OneLine())


def safe_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """Parameters with secret-looking names masked, fit to show in a message."""
    return {
        k: ("***" if any(w in k.lower() for w in _SECRET_PARAM_WORDS) else v)
        for k, v in parameters.items()
    }


def owners_of(tags: Any) -> list[str]:
    """Chat user ids from `owner:<id>` tags."""
    return sorted({t[len(OWNER_TAG_PREFIX):] for t in tags or () if t.startswith(OWNER_TAG_PREFIX)})


def on_flow_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow hook (`on_failure=[on_flow_failure]`): emit one failure event per failed run.

    Prefect calls failure hooks only once the run's own retries are used up, so each failed
    run is announced once; a timed-out run is a Failed run named TimedOut.
    """
    failure = _LOG_TAIL.failure(flow_run.id)
    if failure and failure.exception not in (state.message or ""):
        failure = None  # an exception the run handled; not what failed it (e.g. a timeout)
    deployment = runtime_deployment.name
    messages = in_every_language(lambda language: flow_failure_message(
        flow_name=flow.name,
        flow_run_name=flow_run.name,
        state_name=state.name,
        state_message=state.message or "",
        log_lines=_LOG_TAIL.tail(flow_run.id, LOG_TAIL_RECORDS),
        parameters=safe_parameters(dict(flow_run.parameters or {})),
        deployment=deployment,
        run_url=run_url(flow_run.id),
        failure=failure,
        flow_attempt=(max(1, flow_run.run_count or 1), (flow.retries or 0) + 1),
        owners=owners_of(flow_run.tags),
        language=language,
    ))
    emit_flow_failure(flow_run.id, flow_run.name, flow_run.flow_id, flow.name, deployment, state.name,
                      failure.task_name if failure else None, messages)


def emit_flow_failure(
    flow_run_id: Any, flow_run_name: str, flow_id: Any, flow_name: str, deployment: str | None,
    state_name: str, task_name: str | None, messages: Mapping[str, tuple[str, str]],
) -> None:
    """The one event that announces a failed run (the "flow run failed" automation sends it);
    `messages`: language -> (subject, text)."""
    payload = {
        "flow": flow_name,
        "deployment": deployment,
        "state": state_name,
        "task": task_name,
        **message_fields(messages),
    }
    emit_event(
        event=EVENT_FLOW_FAILED,
        resource={
            "prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
            "prefect.resource.name": flow_run_name,
        },
        related=[
            {
                "prefect.resource.id": f"prefect.flow.{flow_id}",
                "prefect.resource.role": "flow",
                "prefect.resource.name": flow_name,
            }
        ],
        payload=payload,
    )
    _remember(runtime_flow_run.id or flow_run_id, payload)  # the report flow's own run, or the hook's
