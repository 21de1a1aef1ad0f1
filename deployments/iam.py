"""Print the least-privilege IAM policy of each flow, or of the whole collection.

    uv run python -m deployments.iam                      # every flow, read-write
    uv run python -m deployments.iam --flow idle-resources --read-only
    dataplatform-ops iam idle-resources --read-only       # the same

The actions come from the `@requires(...)` declarations of the AWS functions each flow
module uses, so the policy follows the code instead of being written by hand.
"""

from __future__ import annotations

import argparse
import importlib
import json
from types import ModuleType
from typing import Any

from flows.registry import JOBS
from rules.config import ConfigError
from tasks.aws.permissions import permissions_of


def flow_modules() -> dict[str, ModuleType]:
    """Job name -> the module that defines it, from the registry."""
    return {name: importlib.import_module(f.fn.__module__) for name, f in JOBS.items()}


def flow_actions(module: ModuleType, read_only: bool = False) -> set[str]:
    return permissions_of(vars(module).values(), include_write=not read_only)


def policy_document(actions: set[str]) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Sid": "DataplatformOps", "Effect": "Allow",
                       "Action": sorted(actions), "Resource": "*"}],
    }


def policies(job: str | None = None, read_only: bool = False) -> dict[str, Any]:
    """One job's policy document, or every job's and their union under `(collection)`."""
    modules = flow_modules()
    if job:
        if job not in modules:
            raise ConfigError(f"unknown job {job!r}; jobs: {', '.join(sorted(modules))}")
        return policy_document(flow_actions(modules[job], read_only))
    out = {name: policy_document(flow_actions(m, read_only)) for name, m in sorted(modules.items())}
    out["(collection)"] = policy_document(set().union(*(flow_actions(m, read_only) for m in modules.values())))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Least-privilege IAM policies, generated from code.")
    parser.add_argument("--flow", help="one flow name; default: every flow and the union")
    parser.add_argument("--read-only", action="store_true", help="without the apply actions")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(policies(args.flow, args.read_only), indent=2))
    except ConfigError as exc:
        parser.exit(2, f"error: {exc}\n")


if __name__ == "__main__":
    main()
