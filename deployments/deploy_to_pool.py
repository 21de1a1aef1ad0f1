"""Register every deployment of prefect.yaml on another work pool, e.g. ECS, with job variables.

    uv run python -m deployments.deploy_to_pool --pool dataplatform-ops-ecs \
        --job-variable image=123456789012.dkr.ecr.eu-west-1.amazonaws.com/dataplatform-ops:1.0 \
        --job-variable cluster=data-ops

`prefect deploy --all` ignores `--pool` and `--job-variable` (it says so and deploys to the
pools in prefect.yaml), so this runs `prefect --no-prompt deploy --name ...` once per deployment:
Prefect's own CLI, called in this one process, so Prefect and the flows are imported once
rather than once per deployment.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import chdir

from deployments.serve import PREFECT_YAML, deployment_specs


def deploy_arguments(pool: str, job_variables: list[str]) -> list[list[str]]:
    """The `prefect` command line (without `prefect`) of each deployment."""
    options = ["--pool", pool, *[arg for jv in job_variables for arg in ("--job-variable", jv)]]
    return [["--no-prompt", "deploy", "--name", spec["name"], *options] for spec in deployment_specs()]


def prefect_cli(arguments: list[str]) -> int:
    """Run `prefect <arguments>` in this process, as the `prefect` command would; its exit code."""
    from prefect.cli import app

    argv = sys.argv
    sys.argv = ["prefect", *arguments]
    try:
        app()
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.argv = argv
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", required=True, help="the work pool, e.g. dataplatform-ops-ecs")
    parser.add_argument("--job-variable", action="append", default=[], metavar="KEY=VALUE",
                        help="a job variable for every deployment (repeatable)")
    args = parser.parse_args(argv)
    bad = [jv for jv in args.job_variable if "=" not in jv]
    if bad:
        parser.error(f"--job-variable takes KEY=VALUE, got {bad[0]!r}")
    with chdir(PREFECT_YAML.parent):
        for arguments in deploy_arguments(args.pool, args.job_variable):
            name = arguments[arguments.index("--name") + 1]
            if prefect_cli(arguments) != 0:
                sys.exit(f"{name}: prefect deploy failed (its output is above)")
            print(f"{name}: deployed to {args.pool}")


if __name__ == "__main__":
    main()
