"""Everything a Prefect server and the store hold that a person or a chat space could read:
the haystack the secret tests search for planted values."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import sqlalchemy as sa
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter
from prefect.settings import PREFECT_API_URL

PAGE = 200  # the API's largest page


def _pages(read: Callable[[int], list[Any]]) -> Iterator[Any]:
    offset = 0
    while batch := read(offset):
        yield from batch
        offset += len(batch)


def all_events() -> list[str]:
    """Every event the server stored (the events API pages by 50)."""
    api = PREFECT_API_URL.value()
    pages = []
    response = httpx.post(f"{api}/events/filter", json={"limit": 50}).json()
    while True:
        pages.append(json.dumps(response["events"]))
        if not response.get("next_page"):
            return pages
        response = httpx.get(response["next_page"]).json()


def server_haystack() -> list[str]:
    """Every log line, artifact, flow and task run (parameters, state messages) and event."""
    found: list[str] = []
    with get_client(sync_client=True) as client:
        found += [log.message for log in _pages(lambda o: client.read_logs(LogFilter(), limit=PAGE, offset=o))]
        found += [f"{a.key} {a.description} {a.data}" for a in _pages(
            lambda o: client.read_artifacts(limit=PAGE, offset=o))]
        found += [f"{r.name} {r.parameters} {r.state.message if r.state else ''}" for r in _pages(
            lambda o: client.read_flow_runs(limit=PAGE, offset=o))]
        found += [f"{r.name} {r.state.message if r.state else ''}" for r in _pages(
            lambda o: client.read_task_runs(limit=PAGE, offset=o))]
    return found + all_events()


def store_haystack(engine: sa.Engine) -> list[str]:
    """Every row of every table of the store."""
    tables = sa.MetaData()
    tables.reflect(engine)
    with engine.connect() as conn:
        return [str(tuple(row)) for table in tables.sorted_tables for row in conn.execute(sa.select(table))]
