"""The one way this collection emits events; automations turn them into chat messages.

- `emit_findings_digest`: one event per job run that changed something (opened, escalated,
  reminded, resolved findings), carrying the rendered subject and text.
- `on_flow_failure`: a flow hook that emits one event per failed run with the state
  message and the last log lines, which Prefect's open-source server cannot template.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from typing import Any

from prefect.events import emit_event
from prefect.runtime import deployment as runtime_deployment
from prefect.runtime import flow_run as runtime_flow_run
from prefect.settings import PREFECT_UI_URL

from rules.findings import Transitions
from rules.messages import findings_digest, flow_failure_message
from rules.text import redact

EVENT_FINDINGS = "dataplatform-ops.findings.changed"
EVENT_FLOW_FAILED = "dataplatform-ops.flow-run.failed"
LOG_TAIL_RECORDS = 15
_SECRET_PARAM_WORDS = ("password", "secret", "token", "key", "credential", "url", "dsn")


def run_url(flow_run_id: Any = None) -> str | None:
    """Link to a flow run in the Prefect UI (needs PREFECT_UI_URL), or None."""
    flow_run_id = flow_run_id or runtime_flow_run.id
    ui = PREFECT_UI_URL.value()
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui and flow_run_id else None


def emit_findings_digest(job: str, transitions: Transitions) -> bool:
    """Emit the digest event if anything changed; returns whether one was emitted."""
    if transitions.is_quiet:
        return False
    subject, text = findings_digest(job, transitions, run_url())
    worst = max(
        (f.severity.rank for f in transitions.opened + transitions.escalated + transitions.reminded),
        default=0,
    )
    emit_event(
        event=EVENT_FINDINGS,
        resource={"prefect.resource.id": f"dataplatform-ops.job.{job}", "prefect.resource.name": job},
        payload={
            "job": job,
            "subject": subject,
            "text": text,
            "worst_severity_rank": worst,
            "opened": [f.key for f in transitions.opened][:200],
            "escalated": [f.key for f in transitions.escalated][:200],
            "reminded": [f.key for f in transitions.reminded][:200],
            "resolved": transitions.resolved[:200],
        },
    )
    return True


def emit_outbox_flush(job: str) -> None:
    """An empty digest: the chat block then only delivers messages waiting in its outbox."""
    emit_event(
        event=EVENT_FINDINGS,
        resource={"prefect.resource.id": f"dataplatform-ops.job.{job}", "prefect.resource.name": job},
        payload={"job": job, "subject": "", "text": ""},
    )


class _LogTail(logging.Handler):
    """Keeps the last records logged by each flow run in this process (tasks included).

    A traceback is cut to its last lines, so one exception cannot push out the log lines
    that explain it.
    """

    def __init__(self, records: int = 100, runs: int = 64, traceback_lines: int = 6) -> None:
        super().__init__(level=logging.INFO)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s - %(message)s"))
        self._records, self._runs, self._tb = records, runs, traceback_lines
        self._tails: OrderedDict[str, deque[list[str]]] = OrderedDict()
        self._lock = threading.Lock()

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


_LOG_TAIL = _LogTail()
for _name in ("prefect.flow_runs", "prefect.task_runs"):
    if _LOG_TAIL not in logging.getLogger(_name).handlers:
        logging.getLogger(_name).addHandler(_LOG_TAIL)


def _safe_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        k: ("***" if any(w in k.lower() for w in _SECRET_PARAM_WORDS) else v)
        for k, v in parameters.items()
    }


def on_flow_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow hook (`on_failure=[on_flow_failure]`): emit the failure event with the log tail."""
    subject, text = flow_failure_message(
        flow_name=flow.name,
        flow_run_name=flow_run.name,
        state_name=state.name,
        state_message=state.message or "",
        log_lines=_LOG_TAIL.tail(flow_run.id, LOG_TAIL_RECORDS),
        parameters=_safe_parameters(dict(flow_run.parameters or {})),
        deployment=runtime_deployment.name,
        run_url=run_url(flow_run.id),
    )
    emit_event(
        event=EVENT_FLOW_FAILED,
        resource={
            "prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
            "prefect.resource.name": flow_run.name,
        },
        related=[
            {
                "prefect.resource.id": f"prefect.flow.{flow_run.flow_id}",
                "prefect.resource.role": "flow",
                "prefect.resource.name": flow.name,
            }
        ],
        payload={"flow": flow.name, "state": state.name, "subject": subject, "text": redact(text)},
    )
