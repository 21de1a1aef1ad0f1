"""Everything a Prefect server and the store hold that a person or a chat space could read:
the haystack the secret tests search for planted values."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import sqlalchemy as sa
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterId,
    LogFilter,
    LogFilterTimestamp,
)
from prefect.settings import PREFECT_API_URL

PAGE = 200  # the API's largest page


def _pages(read: Callable[[int], list[Any]]) -> Iterator[Any]:
    offset = 0
    while batch := read(offset):
        yield from batch
        offset += len(batch)


def all_events(since: datetime | None = None) -> list[str]:
    """Every event the server stored (since `since`); the events API pages by 50."""
    api = PREFECT_API_URL.value()
    query: dict[str, Any] = {"limit": 50}
    if since:
        query["filter"] = {"occurred": {"since": since.isoformat()}}
    pages = []
    response = httpx.post(f"{api}/events/filter", json=query).json()
    while True:
        pages.append(json.dumps(response["events"]))
        if not response.get("next_page"):
            return pages
        response = httpx.get(response["next_page"]).json()


def server_haystack(since: datetime | None = None) -> list[str]:
    """Every log line, artifact, flow and task run (parameters, state messages) and event, of
    runs since `since` (a shared test server holds every earlier test's too)."""
    found: list[str] = []
    with get_client(sync_client=True) as client:
        runs = list(_pages(lambda o: client.read_flow_runs(
            flow_run_filter=FlowRunFilter(expected_start_time=FlowRunFilterExpectedStartTime(after_=since)),
            limit=PAGE, offset=o)))
        found += [f"{r.name} {r.parameters} {r.state.message if r.state else ''}" for r in runs]
        ids = FlowRunFilterId(any_=[r.id for r in runs])
        found += [f"{r.name} {r.state.message if r.state else ''}" for r in _pages(
            lambda o: client.read_task_runs(flow_run_filter=FlowRunFilter(id=ids), limit=PAGE, offset=o))]
        found += [f"{a.key} {a.description} {a.data}" for a in _pages(lambda o: client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids.any_)),
            limit=PAGE, offset=o))]
        found += [log.message for log in _pages(lambda o: client.read_logs(
            LogFilter(timestamp=LogFilterTimestamp(after_=since)), limit=PAGE, offset=o))]
    return found + all_events(since)


def store_haystack(engine: sa.Engine) -> list[str]:
    """Every row of every table of the store."""
    tables = sa.MetaData()
    tables.reflect(engine)
    with engine.connect() as conn:
        return [str(tuple(row)) for table in tables.sorted_tables for row in conn.execute(sa.select(table))]
