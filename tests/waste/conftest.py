"""Every waste-checks test runs the whole catalogue's listers, the reservation ones included:
their APIs, which moto lacks, answer what a test plants (none unless it does)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deployments.local_reservations import Planted, reservations_answered


@pytest.fixture(autouse=True)
def reservations() -> Iterator[Planted]:
    with reservations_answered() as planted:
        yield planted
