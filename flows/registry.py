"""The job registry: prefect.yaml's deployments, read once.

A job is its own module(s) under flows/ (plus rules/ and tasks/), its tests, and its deployment
entry in prefect.yaml: that entry is the one registry line. The IAM policy generator, the docs,
the demo, the CLI and the contract tests read `JOBS` from here.
"""

from __future__ import annotations

import importlib
import sys
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow

from tasks.runner import Job

PREFECT_YAML = Path(__file__).resolve().parent.parent / "prefect.yaml"


def load_flow(entrypoint: str) -> Flow:
    """`flows/idle_resources.py:idle_resources` -> the flow object."""
    path, name = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


@cache
def _specs(path: Path) -> tuple[dict[str, Any], ...]:
    return tuple(yaml.safe_load(path.read_text()).get("deployments") or [])


def deployment_specs(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """Every deployment entry of prefect.yaml (copies: callers may add to them)."""
    return [dict(spec) for spec in _specs(path)]


def _jobs() -> dict[str, Flow]:
    jobs: dict[str, Flow] = {}
    for spec in _specs(PREFECT_YAML):
        fl = load_flow(spec["entrypoint"])
        jobs.setdefault(fl.name, fl)
    return dict(sorted(jobs.items()))


# Job name (the flow's name) -> flow; a job with several deployments is listed once.
JOBS: dict[str, Flow] = _jobs()


def contracts() -> dict[str, Job]:
    """The jobs declared on the runner (every AWS account sweep): name -> its `Job`."""
    found = {name: getattr(sys.modules[fl.fn.__module__], "CONTRACT", None) for name, fl in JOBS.items()}
    return {name: job for name, job in found.items() if isinstance(job, Job)}
