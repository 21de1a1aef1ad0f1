"""Register every deployment of prefect.yaml on another work pool, e.g. ECS, with job variables.

    uv run python -m deployments.deploy_to_pool --pool dataplatform-ops-ecs \
        --job-variable image=123456789012.dkr.ecr.eu-west-1.amazonaws.com/dataplatform-ops:1.0 \
        --job-variable cluster=data-ops

`prefect deploy --all` ignores `--pool` and `--job-variable` (it says so and deploys to the
pools in prefect.yaml), so this runs `prefect --no-prompt deploy --name ...` once per deployment,
as many at once as there are cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from deployments.serve import PREFECT_YAML, deployment_specs


def deploy_commands(pool: str, job_variables: list[str]) -> list[list[str]]:
    options = ["--pool", pool, *[arg for jv in job_variables for arg in ("--job-variable", jv)]]
    return [[sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--name", spec["name"], *options]
            for spec in deployment_specs()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", required=True, help="the work pool, e.g. dataplatform-ops-ecs")
    parser.add_argument("--job-variable", action="append", default=[], metavar="KEY=VALUE",
                        help="a job variable for every deployment (repeatable)")
    args = parser.parse_args(argv)
    bad = [jv for jv in args.job_variable if "=" not in jv]
    if bad:
        parser.error(f"--job-variable takes KEY=VALUE, got {bad[0]!r}")
    commands = deploy_commands(args.pool, args.job_variable)
    failed = []
    # Each command mostly imports Prefect and one flow module: a few at once, one per core.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for command, done in zip(commands, pool.map(_run, commands), strict=True):
            name = command[command.index("--name") + 1]
            if done.returncode != 0:
                failed.append(f"{name}: prefect deploy failed\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
            else:
                print(f"{name}: deployed to {args.pool}")
    if failed:
        sys.exit("\n".join(failed))


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=PREFECT_YAML.parent, capture_output=True, text=True)


if __name__ == "__main__":
    main()
