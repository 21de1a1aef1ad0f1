"""Serve every deployment in prefect.yaml on its schedule, in this one process (no work pool).

    uv run python -m deployments.serve
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow, serve

PREFECT_YAML = Path(__file__).resolve().parent.parent / "prefect.yaml"


def load_flow(entrypoint: str) -> Flow:
    """`flows/idle_resources.py:idle_resources` -> the flow object."""
    path, name = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


def deployment_specs(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text()).get("deployments") or []


def main(limit: int = 4) -> None:
    runners = []
    for spec in deployment_specs():
        schedule = (spec.get("schedules") or [{}])[0]
        runners.append(
            load_flow(spec["entrypoint"]).to_deployment(
                name=spec["name"],
                cron=schedule.get("cron"),
                interval=schedule.get("interval"),
                parameters=spec.get("parameters") or {},
                tags=spec.get("tags") or [],
                description=spec.get("description"),
            )
        )
    serve(*runners, limit=limit)


if __name__ == "__main__":
    main()
