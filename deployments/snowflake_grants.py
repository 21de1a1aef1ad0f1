"""Print the least-privilege Snowflake role of a Snowflake job, generated from the code.

    uv run python -m deployments.snowflake_grants --job snowflake-cost-report --role OPS_MONITOR --user DATAPLATFORM_OPS
    uv run python -m deployments.snowflake_grants --job snowflake-query-watch --read-only

The grants come from the `@grants(...)` declarations of the Snowflake tasks each flow module
uses (the same walk as the IAM policies), so the role follows the code instead of being written
by hand. Run the script as a role that may grant (SECURITYADMIN, or ACCOUNTADMIN for the
SNOWFLAKE database roles).
"""

from __future__ import annotations

import argparse
from types import ModuleType

from deployments.iam import flow_modules
from tasks.aws.permissions import permissions_of


def snowflake_grants(module: ModuleType, read_only: bool = False) -> set[str]:
    """What a flow module's Snowflake reads (and, unless `read_only`, actions) need."""
    return permissions_of(vars(module).values(), include_write=not read_only,
                          marker="snowflake_grants", write_marker="snowflake_write")


def grant_script(grants: set[str], role: str, user: str) -> str:
    """SQL that creates the role with exactly these grants and gives it to the job's user."""
    lines = [f"CREATE ROLE IF NOT EXISTS {role};"]
    for grant in sorted(grants):
        if "<" in grant:  # one statement per object: the placeholder says which
            head, which = grant.split(" <", 1)
            kind = head.split()[-1].lower()  # ON WAREHOUSE <...> -> <warehouse>
            lines.append(f"GRANT {head} <{kind}> TO ROLE {role};  -- {which.rstrip('>')}")
        else:
            lines.append(f"GRANT {grant} TO ROLE {role};")
    lines.append(f"GRANT ROLE {role} TO USER {user};")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Least-privilege Snowflake roles, generated from code.")
    parser.add_argument("--job", required=True, help="a Snowflake job's name")
    parser.add_argument("--role", default="DATAPLATFORM_OPS", help="the role to create")
    parser.add_argument("--user", default="DATAPLATFORM_OPS", help="the user of the connector block")
    parser.add_argument("--read-only", action="store_true", help="without what only `apply=true` needs")
    args = parser.parse_args(argv)
    modules = flow_modules()
    grants = snowflake_grants(modules[args.job], args.read_only) if args.job in modules else set()
    if not grants:
        snowflake_jobs = sorted(name for name, m in modules.items() if snowflake_grants(m))
        parser.exit(2, f"error: {args.job!r} is not a Snowflake job; Snowflake jobs: {', '.join(snowflake_jobs)}\n")
    print(grant_script(grants, args.role, args.user))


if __name__ == "__main__":
    main()
