"""Fan a multi-account sweep out across the work pool: one child flow run per account.

A deployment run with `role_arns` and the tag `dataplatform-ops:fan-out` (on the deployment in
prefect.yaml, or on one run) starts its own deployment once per account with `run_deployment`:
the credentials' own account, then each role. Each child reads and judges its one account on
whichever worker takes it, records its metrics, and leaves its findings and coverage in the
store instead of telling. The parent gathers the parts, merges their coverage (an account whose
child failed is a gap: nothing there resolves) and tells once. Report only: a run with `apply`
is not fanned out, since approvals belong to one run.
"""

from __future__ import annotations

import json
from typing import Any

from prefect import task
from prefect.blocks.core import Block
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.runtime import deployment, flow_run

from blocks.store import OpsStore
from rules.findings import Coverage, Finding, Gap

FAN_OUT = "dataplatform-ops:fan-out"
PART = "dataplatform-ops:fan-out-part"
OWN_ACCOUNT = "credentials' account"


def is_part() -> bool:
    """This run is one account of a fanned-out sweep."""
    return PART in (flow_run.tags or [])


def fans_out(role_arns: list[str] | None, apply: bool) -> bool:
    tags = set(flow_run.tags or [])
    return FAN_OUT in tags and PART not in tags and bool(role_arns) and not apply and bool(deployment.id)


def save_part(store: OpsStore, job: str, findings: list[Finding], coverage: Coverage, notes: list[str],
              now: Any) -> None:
    """A child's result, kept in the store (shared by every worker) under its flow run id."""
    store.set_watermark(job, f"part:{flow_run.id}", json.dumps({
        "findings": [f.model_dump(mode="json") for f in findings],
        "read": sorted(coverage.read),
        "gaps": [{"scope": g.scope, "error": g.error, "kinds": sorted(g.kinds), "prefix": g.resource_prefix}
                 for g in coverage.gaps],
        "notes": notes,
    }), now)


@task(name="account-run", cache_policy=NO_CACHE, task_run_name="account-run-{label}")
def _run_account(name: str, parameters: dict[str, Any], label: str) -> FlowRun:
    return run_deployment(name, parameters=parameters, tags=[PART], timeout=None)


def gather(store: OpsStore, job: str, role_arns: list[str]) -> tuple[list[Finding], Coverage, list[str]]:
    """Run one child per account (in parallel, on the pool's workers) and merge their parts."""
    name = f"{flow_run.flow_name}/{deployment.name}"
    # A block picked in the run's form reaches the children as the same saved block, not its fields.
    parameters = {k: {"$ref": {"block_document_id": str(v._block_document_id)}} if isinstance(v, Block) else v
                  for k, v in flow_run.parameters.items()}
    accounts = [(OWN_ACCOUNT, []), *((arn, [arn]) for arn in role_arns)]
    futures = [(label, _run_account.submit(name, {**parameters, "role_arns": arns}, label))
               for label, arns in accounts]
    findings: list[Finding] = []
    coverage, notes = Coverage(), []
    for label, future in futures:
        try:
            child = future.result()
        except Exception as exc:  # the child could not even be created: that account is a gap
            coverage.fail(label, f"its account run could not start: {exc}")
            continue
        raw = store.get_watermark(job, f"part:{child.id}")
        if raw is None:
            state = child.state
            coverage.fail(label, f"account run {child.name} ended {state.name if state else '?'}"
                                 f"{f': {state.message}' if state and state.message else ''}")
            continue
        store.delete_watermark(job, f"part:{child.id}")
        part = json.loads(raw)
        findings += [Finding.model_validate(f) for f in part["findings"]]
        coverage.merge(Coverage(set(part["read"]), [
            Gap(g["scope"], g["error"], frozenset(g["kinds"]), g["prefix"]) for g in part["gaps"]]))
        notes += part["notes"]
    return findings, coverage, notes
