"""The test rig: one Prefect server, moto, PostgreSQL, and a local Google Chat space.

Everything here is real: a Prefect server subprocess (`prefect_test_harness`), moto's AWS,
a PostgreSQL server (found or started, see deployments/local_postgres.py), and an HTTP
receiver that checks each message against Google Chat's webhook format.
"""

from __future__ import annotations

import os

# Before boto3/moto import: fake credentials, no default AMIs, never a real endpoint.
os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
for _var, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "DO_NOT_TRACK": "1",
}.items():
    os.environ[_var] = _value
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_ENDPOINT_URL", None)

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from moto import mock_aws
from prefect.settings import (
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    PREFECT_SERVER_ANALYTICS_ENABLED,
    PREFECT_UI_URL,
    temporary_settings,
)
from prefect.testing.utilities import prefect_test_harness

from blocks.google_chat import GoogleChatWebhook
from blocks.store import OpsStore
from deployments.automations import apply_automations
from deployments.chat_receiver import ChatReceiver
from deployments.local_postgres import postgres_server, to_url, with_database


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long tests (marked `slow`) first: `make test` hands whole modules to its parallel workers
    in this order, so the long ones start at once and the short ones fill the gaps, instead of
    one long module ending the run alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[None]:
    """One real Prefect server for the whole session (SQLite), heartbeats off. Under
    pytest-xdist (`make test`) each worker process has its own: its own port and database."""
    with temporary_settings(
        {PREFECT_SERVER_ANALYTICS_ENABLED: False, PREFECT_UI_URL: "http://prefect.test"}
    ):
        with prefect_test_harness(server_startup_timeout=900):  # counts polls, not seconds: generous under load
            with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
                yield


@pytest.fixture
def aws() -> Iterator[None]:
    """moto, in process."""
    with mock_aws():
        yield


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[str]:
    """Admin conninfo for a PostgreSQL server (never skipped: fails saying how to get one)."""
    with postgres_server() as url:
        yield url


@contextmanager
def fresh_database(pg_admin: str) -> Iterator[str]:
    """A new, empty database on the server; dropped on exit."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(pg_admin, name)
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_dsn(pg_admin: str) -> Iterator[str]:
    """A fresh database for this test; dropped afterwards."""
    with fresh_database(pg_admin) as dsn:
        yield dsn


@pytest.fixture
def chat() -> Iterator[ChatReceiver]:
    with ChatReceiver() as receiver:
        yield receiver


ROUTE_BLOCK = "chat-route"


def route_to(chat: ChatReceiver, **options) -> str:
    """Point the automations at `chat`; the block's name. One GoogleChatWebhook block, overwritten
    for each test: the server refreshes its automation cache in a task after the commit (SQLite),
    so an event emitted at once can still meet an automation as the previous test left it. That
    automation names this same block, which now sends here (a new block per test lost two alerts
    to the previous test's closed receiver under load, despite a 1 s wait)."""
    GoogleChatWebhook(url=chat.url, **{"max_backoff_seconds": 0.05, "min_interval_seconds": 0, **options}).save(
        ROUTE_BLOCK, overwrite=True)
    apply_automations(chat_block=ROUTE_BLOCK)
    time.sleep(1)  # after a test that routed the automations to another block (test_backbone)
    return ROUTE_BLOCK


@pytest.fixture
def routed(chat: ChatReceiver) -> ChatReceiver:
    """The chat receiver, with the automations routed to it."""
    chat.block_name = route_to(chat)
    return chat


@pytest.fixture
def store(tmp_path) -> OpsStore:
    """A SQLite store saved as a block with a unique name."""
    block = OpsStore(url=f"sqlite:///{tmp_path / 'store.db'}")
    block.save(f"store-{uuid.uuid4().hex[:8]}")
    return block


@pytest.fixture
def pg_store(pg_dsn: str) -> OpsStore:
    """A PostgreSQL store saved as a block with a unique name."""
    block = OpsStore(url=to_url(pg_dsn))
    block.save(f"pgstore-{uuid.uuid4().hex[:8]}")
    return block
