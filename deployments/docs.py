"""Write the generated parts of `docs/jobs/<job>.md` from the code, so they cannot go stale.

    uv run python -m deployments.docs           # rewrite the generated sections
    uv run python -m deployments.docs --check   # exit 1 when a page is stale (the tests do this)

Each page keeps its prose; between the markers below it gets the job's parameters and policy
fields (from the flow's signature and its pydantic policy model) and, for AWS jobs, the
least-privilege IAM actions (from the code's `@requires` declarations), for Snowflake jobs the
grants of their role (from `@grants`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from deployments.iam import flow_actions, flow_modules
from deployments.snowflake_grants import snowflake_grants
from flows.registry import JOBS

DOCS = Path(__file__).resolve().parent.parent / "docs" / "jobs"
BEGIN = "<!-- BEGIN GENERATED: do not edit; `uv run python -m deployments.docs` writes this -->"
END = "<!-- END GENERATED -->"


# One meaning per word: what the contract's common parameters mean in every job.
COMMON = {
    "policy": "Thresholds and settings; see the table below.",
    "regions": "Regions to read; unset means every region enabled for each account.",
    "role_arns": "Roles to assume, one per extra account, besides the credentials' own account.",
    "aws_credentials": "Name of the prefect-aws `AwsCredentials` block.",
    "store": "Name of the `OpsStore` block (findings, history, actions).",
    "apply": "Change things: publish the plan, wait for a person's approval, act on what they pick.",
    "now": "Replay only: judge as if it were this time (tests, re-running a past window); leave empty.",
}


def _cell(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else f'"{value}"'
    return text.replace("|", "\\|")


def _rows(properties: dict[str, Any]) -> list[str]:
    return [f"| `{name}` | {'(below)' if name == 'policy' else _cell(spec.get('default'))} | "
            f"{(spec.get('description') or COMMON.get(name, '')).strip()} |"
            for name, spec in properties.items()]


def generated(job: str) -> str:
    """The generated section of a job's page."""
    fl = JOBS[job]
    schema = fl.parameters.model_dump()
    lines = [BEGIN, "", "## Parameters", "", "| parameter | default | meaning |", "| --- | --- | --- |"]
    lines += _rows(schema["properties"])
    for name, model in sorted((schema.get("definitions") or {}).items()):
        if name.endswith("Policy"):
            lines += ["", f"### `policy` ({name})", "", "| field | default | meaning |", "| --- | --- | --- |"]
            lines += _rows(model["properties"])
    actions = flow_actions(flow_modules()[job])
    if actions:
        read = flow_actions(flow_modules()[job], read_only=True)
        lines += ["", "## IAM permissions", "", "Read (every run): " + ", ".join(f"`{a}`" for a in sorted(read))]
        if actions - read:
            lines.append("Apply (only with `apply=True`): " + ", ".join(f"`{a}`" for a in sorted(actions - read)))
        lines += ["", f"The policy document: `uv run python -m deployments.iam --flow {job}`."]
    granted = snowflake_grants(flow_modules()[job])
    if granted:
        read = snowflake_grants(flow_modules()[job], read_only=True)
        lines += ["", "## Snowflake grants", "", "The connector block's role, every run: "
                  + ", ".join(f"`{g}`" for g in sorted(read))]
        if granted - read:
            lines.append("Only with `apply=True`: " + ", ".join(f"`{g}`" for g in sorted(granted - read)))
        lines += ["", f"The script: `uv run python -m deployments.snowflake_grants --job {job}`."]
    return "\n".join([*lines, "", END])


def render(job: str, page: str) -> str:
    """`page` with its generated section replaced (appended when it has none)."""
    if BEGIN in page and END in page:
        head, rest = page.split(BEGIN, 1)
        return head + generated(job) + rest.split(END, 1)[1]
    return page.rstrip("\n") + "\n\n" + generated(job) + "\n"


def stale() -> list[str]:
    """Jobs whose page is missing or out of date."""
    return [job for job in JOBS
            if not (DOCS / f"{job}.md").is_file()
            or render(job, (DOCS / f"{job}.md").read_text()) != (DOCS / f"{job}.md").read_text()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate the job pages' parameter and IAM sections.")
    parser.add_argument("--check", action="store_true", help="exit 1 when a page is stale; write nothing")
    args = parser.parse_args(argv)
    if args.check:
        late = stale()
        if late:
            sys.exit(f"stale job pages: {', '.join(late)}; run `uv run python -m deployments.docs`")
        return
    DOCS.mkdir(parents=True, exist_ok=True)
    for job in JOBS:
        path = DOCS / f"{job}.md"
        page = path.read_text() if path.is_file() else f"# {job}\n"
        path.write_text(render(job, page))


if __name__ == "__main__":
    main()
