"""Serve every deployment in prefect.yaml on its schedule, in this one process (no work pool).

    uv run python -m deployments.serve
"""

from __future__ import annotations

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig

from flows.registry import PREFECT_YAML, deployment_specs, load_flow

__all__ = ["PREFECT_YAML", "deployment_specs", "load_flow", "main"]


def main(limit: int = 4) -> None:
    runners = []
    for spec in deployment_specs():
        schedule = (spec.get("schedules") or [{}])[0]
        concurrency = spec.get("concurrency_limit")
        runners.append(
            load_flow(spec["entrypoint"]).to_deployment(
                name=spec["name"],
                cron=schedule.get("cron"),
                interval=schedule.get("interval"),
                parameters=spec.get("parameters") or {},
                tags=spec.get("tags") or [],
                description=spec.get("description"),
                concurrency_limit=ConcurrencyLimitConfig(**concurrency) if isinstance(concurrency, dict) else concurrency,
            )
        )
    serve(*runners, limit=limit)


if __name__ == "__main__":
    main()
