"""The idle-resource tests: the same real Prefect server as the rest of the suite, with a longer
start-up allowance (on a loaded shared machine its migrations alone can take two minutes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect.settings import (
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    PREFECT_SERVER_ANALYTICS_ENABLED,
    PREFECT_UI_URL,
    temporary_settings,
)
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[None]:
    with temporary_settings(
        {PREFECT_SERVER_ANALYTICS_ENABLED: False, PREFECT_UI_URL: "http://prefect.test"}
    ):
        with prefect_test_harness(server_startup_timeout=300):
            with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
                yield
